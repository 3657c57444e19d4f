// Package arm holds what is specific to ARM boards: board profiles (defaults
// for heartbeat, election timeout, WAL segment size and batching per kind of
// storage), the systemd unit, and the cross-build and emulated-test scripts.
// It holds no business logic. Today the cross builds are `make cross` and the
// emulated runs are tests/e2e/arm_test.go (qemu-user).
package arm
