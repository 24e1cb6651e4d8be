module github.com/duplexws/duplex/peers

go 1.26.0

toolchain go1.27.3

require (
	github.com/coder/websocket v1.8.15
	github.com/duplexws/duplex v0.0.0
	github.com/gobwas/ws v1.5.0
	github.com/gorilla/websocket v1.5.3
	github.com/lesismal/nbio v1.6.8
	github.com/lxzan/gws v1.8.9
	github.com/redis/go-redis/v9 v9.23.0
	github.com/redis/rueidis v1.0.80
	golang.org/x/net v0.62.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/dolthub/maphash v0.1.0 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/klauspost/compress v1.20.5 // indirect
	github.com/lesismal/llib v1.2.2 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)

replace github.com/duplexws/duplex => ../
