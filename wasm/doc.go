// Package wasm will host WebAssembly watch handlers on wazero: a handler is a
// module plus a binding (key prefix, event filter, where it runs, limits,
// output sink), stored in the cluster under a reserved prefix and hot-reloaded
// on every member. ABI v1 (import module "edgekv"): the guest exports
// edgekv_abi_v1, edgekv_alloc and edgekv_on_events; the host offers log,
// kv_get, kv_put, kv_delete, emit and now_ms. Each call runs under a memory
// cap and a deadline; a trap fails the handler, never the server.
//
// Nothing is implemented here yet; see DESIGN.md "WebAssembly watch handlers".
package wasm
