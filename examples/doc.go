// Package examples holds runnable programs that use edgekv through the
// official etcd Go client, each with a test that runs it.
package examples
