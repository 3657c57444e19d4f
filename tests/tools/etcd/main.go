// Command etcd is real etcd, built from go.etcd.io/etcd/server/v3, so the
// end-to-end tests can run the same scenarios against it and against edgekv.
// It lives in its own module so etcd's server never enters edgekv's go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
