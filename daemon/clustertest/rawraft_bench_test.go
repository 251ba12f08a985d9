package clustertest_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"cnm/pki"
	"cnm/raftnode"
)

// The yardstick of docs/BENCHMARKS.md: hashicorp/raft by itself, with the
// configuration and stores a cnm node runs (raftnode.RaftConfig: the LAN
// defaults, raft-boltdb/v2, file snapshots), three members in this process
// over TCP loopback, and 200-byte commands into an FSM that only counts.
// Every cnm figure of the write-up is a ratio against these, measured in
// the same run.

type countFSM struct{ n atomic.Uint64 }

func (f *countFSM) Apply(*raft.Log) any { return f.n.Add(1) }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	return countSnap{}, nil
}
func (f *countFSM) Restore(rc io.ReadCloser) error { return rc.Close() }

type countSnap struct{}

func (countSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (countSnap) Release()                          {}

// tlsLayer is a raft stream layer over mutual TLS, as cnm's raft runs:
// the second yardstick, which tells raft's own cost over TLS from what
// cnm adds to it.
type tlsLayer struct {
	net.Listener
	client *tls.Config
}

func (l *tlsLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), l.client)
}

// tlsTransport is a raft transport on host over mutual TLS, with a node
// certificate of ca for uid.
func tlsTransport(b *testing.B, ca *pki.CA, uid int, host string) *raft.NetworkTransport {
	b.Helper()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(uid, []string{host})
	if err != nil {
		b.Fatal(err)
	}
	certPEM, err := ca.Sign(csrPEM, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	m := pki.Material{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM}
	server, err := m.ServerConfig(true)
	if err != nil {
		b.Fatal(err)
	}
	client, err := m.ClientConfig()
	if err != nil {
		b.Fatal(err)
	}
	ln, err := tls.Listen("tcp", net.JoinHostPort(host, "0"), server)
	if err != nil {
		b.Fatal(err)
	}
	return raft.NewNetworkTransport(&tlsLayer{Listener: ln, client: client}, 3, 10*time.Second, io.Discard)
}

// rawCluster starts three raft members, over plain TCP or over mutual
// TLS, and returns the leader.
func rawCluster(b *testing.B, overTLS bool) (*raft.Raft, []*raft.Raft) {
	b.Helper()
	dir := b.TempDir()
	var ca *pki.CA
	if overTLS {
		var err error
		if ca, err = pki.NewCA("raw-raft", time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	var rafts []*raft.Raft
	var servers []raft.Server
	type member struct {
		cfg   *raft.Config
		logs  *raftboltdb.BoltStore
		snaps raft.SnapshotStore
		trans *raft.NetworkTransport
	}
	var ms []member
	for i := 1; i <= 3; i++ {
		cfg := raftnode.Config{ID: i, Dir: filepath.Join(dir, fmt.Sprint(i))}
		rc := raftnode.RaftConfig(cfg)
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			b.Fatal(err)
		}
		logs, err := raftboltdb.NewBoltStore(filepath.Join(cfg.Dir, "raft.db"))
		if err != nil {
			b.Fatal(err)
		}
		snaps, err := raft.NewFileSnapshotStore(cfg.Dir, 2, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		var trans *raft.NetworkTransport
		if overTLS {
			trans = tlsTransport(b, ca, i, fmt.Sprintf("127.0.0.%d", 40+i))
		} else if trans, err = raft.NewTCPTransport(fmt.Sprintf("127.0.0.%d:0", 40+i), nil, 3, 10*time.Second, io.Discard); err != nil {
			b.Fatal(err)
		}
		ms = append(ms, member{rc, logs, snaps, trans})
		servers = append(servers, raft.Server{ID: rc.LocalID, Address: trans.LocalAddr()})
	}
	for i, m := range ms {
		r, err := raft.NewRaft(m.cfg, &countFSM{}, m.logs, m.logs, m.snaps, m.trans)
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
				b.Fatal(err)
			}
		}
		rafts = append(rafts, r)
	}
	b.Cleanup(func() {
		for i, r := range rafts {
			_ = r.Shutdown().Error()
			_ = ms[i].trans.Close()
			_ = ms[i].logs.Close()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range rafts {
			if r.State() == raft.Leader && r.Barrier(time.Second).Error() == nil {
				return r, rafts
			}
		}
		time.Sleep(10 * time.Millisecond) // polling for an election, not synchronising
	}
	b.Fatal("no leader in 10 s")
	return nil, nil
}

func BenchmarkRawRaft(b *testing.B) {
	leader, _ := rawCluster(b, false)
	cmd := make([]byte, 200)
	applySeq := func(leader *raft.Raft) func(b *testing.B) {
		return func(b *testing.B) {
			ds := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t := time.Now()
				if err := leader.Apply(cmd, 5*time.Second).Error(); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(t))
			}
			reportLatency(b, ds)
		}
	}
	apply16 := func(leader *raft.Raft) func(b *testing.B) {
		return func(b *testing.B) {
			parallel(b, 16, func() error { return leader.Apply(cmd, 5*time.Second).Error() })
		}
	}
	b.Run("apply_seq", applySeq(leader))
	b.Run("apply_16", apply16(leader))
	b.Run("verify_leader_16", func(b *testing.B) {
		parallel(b, 16, func() error { return leader.VerifyLeader().Error() })
	})
	// The same over mutual TLS, as cnm's raft runs (after the plain runs,
	// so that those stay as they were measured before).
	tlsLeader, _ := rawCluster(b, true)
	b.Run("apply_seq_tls", applySeq(tlsLeader))
	b.Run("apply_16_tls", apply16(tlsLeader))
}

// BenchmarkRawRaftFailover times, from the leader's shutdown (no
// leadership transfer), until another member has accepted a command: what
// "first write after the leader dies" costs raft itself.
func BenchmarkRawRaftFailover(b *testing.B) {
	cmd := make([]byte, 200)
	for b.Loop() {
		b.StopTimer()
		leader, rafts := rawCluster(b, false)
		b.StartTimer()
		if err := leader.Shutdown().Error(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
	wait:
		for {
			for _, r := range rafts {
				if r != leader && r.State() == raft.Leader && r.Apply(cmd, time.Second).Error() == nil {
					break wait
				}
			}
			if time.Now().After(deadline) {
				b.Fatal("no member took a command within 30 s of the leader's end")
			}
			time.Sleep(time.Millisecond) // polling for the election, with a deadline
		}
	}
}
