// Package rpc serves the etcd v3 API on the client port: the gRPC services
// (KV, Watch, Maintenance, Cluster, Lease so far) on etcd's own protobuf
// types, the JSON gateway paths (/v3/kv/..., /v3/watch, /v3/lease/... and
// etcd's /v3/kv/lease/... aliases), and /health and /version. The gateway
// calls the streaming methods (/v3/watch, /v3/lease/keepalive) over an
// in-memory gRPC connection to this
// server, as etcd's gateway calls its own endpoint. It translates only:
// every decision is made by the Backend it is given (core/server), and every
// error a client sees is etcd's own (rpctypes), so clients react to edgekv as
// they do to etcd.
//
// Watch (watch.go) is etcd's v3rpc watch server over the member's watch hub
// (core/watch): one gRPC stream carries any number of watchers; a receive
// loop turns create, cancel and progress requests into hub calls and queues
// the created and canceled responses, and a send loop sends those and the
// hub's responses, holding a watcher's responses back until its created
// response is out, and splitting large ones for watchers that asked for
// fragments. A stream opened with clientv3's WithRequireLeader (etcdctl
// watch does) is refused by a member without a leader and ended after three
// election timeouts without one, with etcd's "no leader", so that the
// client moves to another member.
//
// gRPC (HTTP/2 with prior knowledge) and HTTP/1.1 share one listener: Serve
// reads the first bytes of each connection and hands it to the gRPC server
// or to the HTTP server.
package rpc
