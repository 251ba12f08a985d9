package fsm_test

import (
	"slices"
	"testing"

	"cnm/fsm"
)

func nodeCerts(t *testing.T, f *fsm.FSM, uid int) []fsm.CertRef {
	t.Helper()
	var out []fsm.CertRef
	f.Read(func(st *fsm.State, _ uint64) {
		if n, ok := st.Nodes[uid]; ok {
			out = slices.Clone(n.Certs)
		}
	})
	return out
}

func revoked(f *fsm.FSM, serial string) (yes bool) {
	f.Read(func(st *fsm.State, _ uint64) { yes = st.CertRevoked(serial) })
	return yes
}

// TestSetNodeCerts_RenewalRotationAndExpiry walks one node's certificates
// through renewals, a rotation and expiry.
func TestSetNodeCerts_RenewalRotationAndExpiry(t *testing.T) {
	f, apply := actionFSM(t)
	a, b, c := fsm.CertRef{Serial: "aa", NotAfter: 100}, fsm.CertRef{Serial: "bb", NotAfter: 200}, fsm.CertRef{Serial: "cc", NotAfter: 300}
	steps := []struct {
		name        string
		cmd         *fsm.SetNodeCerts
		wantCerts   []fsm.CertRef
		wantRevoked []string
		wantValid   []string
		code        string
	}{
		{"first certificate", &fsm.SetNodeCerts{UID: 2, Add: &a, Time: 10}, []fsm.CertRef{a}, nil, []string{"aa"}, ""},
		{"a renewal keeps the previous one", &fsm.SetNodeCerts{UID: 2, Add: &b, Time: 20}, []fsm.CertRef{a, b}, nil, []string{"aa", "bb"}, ""},
		{"the next renewal revokes the oldest", &fsm.SetNodeCerts{UID: 2, Add: &c, Time: 30}, []fsm.CertRef{b, c}, []string{"aa"}, []string{"bb", "cc"}, ""},
		{"the node revokes what it no longer uses", &fsm.SetNodeCerts{UID: 2, Revoke: []string{"bb"}, Time: 40}, []fsm.CertRef{c}, []string{"aa", "bb"}, []string{"cc"}, ""},
		{"revoking again changes nothing", &fsm.SetNodeCerts{UID: 2, Revoke: []string{"bb"}, Time: 50}, []fsm.CertRef{c}, []string{"aa", "bb"}, []string{"cc"}, ""},
		{"a revoked certificate cannot come back", &fsm.SetNodeCerts{UID: 2, Add: &a, Time: 60}, []fsm.CertRef{c}, []string{"aa", "bb"}, nil, "invalid_parameter"},
		{"an unknown node", &fsm.SetNodeCerts{UID: 9, Add: &c, Time: 60}, []fsm.CertRef{c}, []string{"aa", "bb"}, nil, "node_not_found"},
		{"expired revocations are forgotten", &fsm.SetNodeCerts{UID: 2, Time: 150}, []fsm.CertRef{c}, []string{"bb"}, []string{"aa", "cc"}, ""},
	}
	for _, st := range steps {
		r := apply(st.cmd)
		switch {
		case st.code == "" && r.Err != nil:
			t.Fatalf("%s: %v", st.name, r.Err)
		case st.code != "" && (r.Err == nil || r.Err.Code != st.code):
			t.Fatalf("%s: error %v, want %s", st.name, r.Err, st.code)
		}
		if got := nodeCerts(t, f, 2); !slices.Equal(got, st.wantCerts) {
			t.Errorf("%s: certs %+v, want %+v", st.name, got, st.wantCerts)
		}
		for _, s := range st.wantRevoked {
			if !revoked(f, s) {
				t.Errorf("%s: %s is not revoked", st.name, s)
			}
		}
		for _, s := range st.wantValid {
			if revoked(f, s) {
				t.Errorf("%s: %s is revoked", st.name, s)
			}
		}
	}
}

// TestRemoveMember_RevokesTheNodesCertificates: once a node leaves the
// cluster, its certificates open no door.
func TestRemoveMember_RevokesTheNodesCertificates(t *testing.T) {
	f, apply := actionFSM(t)
	cert := fsm.CertRef{Serial: "3a", NotAfter: 1 << 40}
	if r := apply(&fsm.SetNodeCerts{UID: 3, Add: &cert, Time: 1}); r.Err != nil {
		t.Fatal(r.Err)
	}
	runningAction(t, apply, 3, []fsm.Step{{Kind: fsm.StepRemoveMember, From: 3}})
	if r := apply(&fsm.StepDone{TaskID: "task", Term: 3, Index: 0}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if !revoked(f, "3a") {
		t.Error("the removed node's certificate is not revoked")
	}
}

// TestRotateNodeCert_CountsRequests: each rotation asked for is one the
// node has to carry out.
func TestRotateNodeCert_CountsRequests(t *testing.T) {
	f, apply := actionFSM(t)
	for range 2 {
		if r := apply(&fsm.RotateNodeCert{Actor: fsm.Actor{UID: 1, Revision: 1}, UID: 2}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	f.Read(func(st *fsm.State, _ uint64) {
		if got := st.Nodes[2].CertRotation; got != 2 {
			t.Errorf("cert_rotation = %d, want 2", got)
		}
	})
	if r := apply(&fsm.RotateNodeCert{Actor: fsm.Actor{UID: 1, Revision: 1}, UID: 7}); r.Err == nil || r.Err.Code != "node_not_found" {
		t.Errorf("rotation of an unknown node: %v", r.Err)
	}
}
