// Package peer is cnm's node-to-node protocol over the cluster's mutual TLS:
// the one HTTP client nodes call each other with (its connections leave from
// the node's own address and show its current certificate), the one decoder
// of a remote node's error answers, the one server-side check that a caller
// holds a current member's certificate, forwarding of writes to the leader,
// and the server side of the internal endpoints: read index, members,
// checkpoint hashes, certificate renewal, and both sides of a join.
//
// It never authenticates users or decides permissions (httpapi does, and
// mounts these endpoints behind its routing), and it never plans or runs
// node actions: it carries requests between nodes.
package peer
