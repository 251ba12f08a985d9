// Package daemon assembles one cnm node — TLS identity, raft member, REST
// API — and runs its life: bootstrap, join, restart from the data dir, and
// clean shutdown. cmd/cnmd and the multi-node test harness start nodes
// through it, so tests run exactly what operators run.
package daemon
