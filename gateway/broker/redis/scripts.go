package redis

import (
	_ "embed"

	"github.com/redis/rueidis"
)

// The scripts run with EVALSHA, and EVAL when the server does not have
// them yet (after a restart, on a new Cluster node).
var (
	//go:embed publish.lua
	publishSource string
	//go:embed history.lua
	historySource string
	//go:embed presence.lua
	presencePrelude string
	//go:embed presence_add.lua
	presenceAddSource string
	//go:embed presence_remove.lua
	presenceRemoveSource string
	//go:embed presence_get.lua
	presenceGetSource string

	publishScript        = rueidis.NewLuaScript(publishSource)
	historyScript        = rueidis.NewLuaScript(historySource)
	presenceAddScript    = rueidis.NewLuaScript(presencePrelude + presenceAddSource)
	presenceRemoveScript = rueidis.NewLuaScript(presencePrelude + presenceRemoveSource)
	presenceGetScript    = rueidis.NewLuaScript(presencePrelude + presenceGetSource)
)
