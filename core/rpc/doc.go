// Package rpc serves the etcd v3 API on the client port: the gRPC services
// (KV, Maintenance, Cluster so far) on etcd's own protobuf types, the JSON
// gateway paths (/v3/kv/...), and /health and /version. It translates only:
// every decision is made by the Backend it is given (core/server), and every
// error a client sees is etcd's own (rpctypes), so clients react to edgekv as
// they do to etcd.
//
// gRPC (HTTP/2 with prior knowledge) and HTTP/1.1 share one listener: Serve
// reads the first bytes of each connection and hands it to the gRPC server
// or to the HTTP server.
package rpc
