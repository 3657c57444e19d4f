// Command edgekv is the single edgekv binary. Run with etcd's server flags
// it is a cluster member; `edgekv version` prints its version. Every flag can
// also be set through the environment as EDGEKV_<FLAG_NAME> (for example
// EDGEKV_INITIAL_CLUSTER), following etcd's ETCD_ convention; a flag given
// on the command line wins.
package main
