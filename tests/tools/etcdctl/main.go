// Command etcdctl is stock etcdctl, built from go.etcd.io/etcd/etcdctl/v3, so
// the end-to-end tests can feed the same commands to edgekv and to etcd.
// It lives in its own module so its dependencies stay out of the tests module.
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() { ctlv3.MustStart() }
