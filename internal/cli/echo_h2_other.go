//go:build !unix

package cli

import "errors"

// execWithEnv cannot replace the process here.
func execWithEnv(name, value string) error {
	return errors.New("cannot run itself again with " + name + "=" + value + " on this system")
}
