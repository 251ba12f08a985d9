package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/crypto/bcrypt"

	"cnm/cluster"
	"cnm/fsm"
	"cnm/httpapi"
	"cnm/pki"
	"cnm/raftnode"
)

// The node every test server runs on, and the cluster's first admin.
const (
	testClusterName = "test-cluster"
	testNodeUID     = 1
	testNodeAPI     = "127.0.0.1:9443"
	testNodeRaft    = "127.0.0.1:9444"
	adminEmail      = "admin@cnm.local"
	adminPassword   = "admin-secret"
)

// allRoles are the roles of SPEC §8, written out here rather than taken from
// the code under test.
var allRoles = []string{"admin", "cluster_member", "cluster_viewer", "db_member", "db_viewer", "user_manager", "none"}

// fakeRaft is a single-member raft: it always leads (unless told to act as a
// follower that sees no leader) and applies every command to a real FSM at
// the next index, handing back the FSM's result as raftnode.Node does.
type fakeRaft struct {
	uid      int
	raftAddr string
	fsm      *fsm.FSM

	mu         sync.Mutex
	follower   bool
	applyCalls int
	voters     []voterCall
	nonvoters  []voterCall
	serversErr error
}

type voterCall struct {
	UID      int
	RaftAddr string
}

var _ httpapi.Raft = (*fakeRaft)(nil)

func newFakeRaft(f *fsm.FSM) *fakeRaft {
	return &fakeRaft{uid: testNodeUID, raftAddr: testNodeRaft, fsm: f}
}

// setFollower makes the node a follower that knows no leader (no quorum).
func (r *fakeRaft) setFollower(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.follower = on
}

func (r *fakeRaft) calls() (applies int, voters []voterCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applyCalls, append([]voterCall(nil), r.voters...)
}

func (r *fakeRaft) ID() int        { return r.uid }
func (r *fakeRaft) FSM() *fsm.FSM  { return r.fsm }
func (r *fakeRaft) Term() uint64   { return 1 }
func (r *fakeRaft) IsLeader() bool { r.mu.Lock(); defer r.mu.Unlock(); return !r.follower }

func (r *fakeRaft) Role() string {
	if r.IsLeader() {
		return "leader"
	}
	return "follower"
}

func (r *fakeRaft) Leader() (int, string) {
	if !r.IsLeader() {
		return 0, ""
	}
	return r.uid, r.raftAddr
}

func (r *fakeRaft) Indexes() (commit, last uint64) {
	a := r.fsm.Applied()
	return a, a
}

func (r *fakeRaft) Apply(_ context.Context, cmd []byte) (*fsm.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applyCalls++
	if r.follower {
		return nil, raftnode.ErrNotLeader
	}
	next := r.fsm.Applied() + 1
	out := r.fsm.Apply(&raft.Log{Index: next, Term: 1, Type: raft.LogCommand, Data: cmd})
	res, ok := out.(*fsm.Result)
	if !ok {
		panic("fsm.Apply returned something other than *fsm.Result")
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

func (r *fakeRaft) ReadIndex(context.Context) (uint64, error) {
	if !r.IsLeader() {
		return 0, raftnode.ErrNotLeader
	}
	return r.fsm.Applied(), nil
}

func (r *fakeRaft) WaitApplied(context.Context, uint64) error { return nil }

func (r *fakeRaft) AddVoter(_ context.Context, uid int, raftAddr string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.voters = append(r.voters, voterCall{UID: uid, RaftAddr: raftAddr})
	return nil
}

func (r *fakeRaft) AddNonvoter(_ context.Context, uid int, raftAddr string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nonvoters = append(r.nonvoters, voterCall{UID: uid, RaftAddr: raftAddr})
	return nil
}

func (r *fakeRaft) Servers() ([]raftnode.Server, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.serversErr != nil {
		return nil, r.serversErr
	}
	return []raftnode.Server{{UID: r.uid, RaftAddr: r.raftAddr, Voter: true}}, nil
}

// testCA is the cluster CA every test cluster shares (key generation is the
// slow part of making one).
var testCA = sync.OnceValues(func() (*pki.CA, error) {
	return pki.NewCA(testClusterName, time.Now())
})

// testUser is a user of a test cluster with its clear-text password.
type testUser struct {
	UID      int
	Email    string
	Password string
	Role     string
}

// userJSON is the user object of SPEC §5.1, exactly.
type userJSON struct {
	UID   int    `json:"uid"`
	Email string `json:"email"`
	Name  string `json:"name"`
	Role  string `json:"role"`
}

// env is one node's API over a fake raft.
type env struct {
	t     testing.TB
	raft  *fakeRaft
	fsm   *fsm.FSM
	h     http.Handler
	cfg   httpapi.Config      // what h was built with
	users map[string]testUser // by role; "admin" is the bootstrap admin
}

// newServer builds another API with e's configuration over r.
func (e *env) newServer(r *fakeRaft) http.Handler {
	cfg := e.cfg
	cfg.Raft = r
	return httpapi.New(cfg)
}

type envConfig struct {
	hold         time.Duration
	adminCost    int
	serverCost   int
	noRoleUsers  bool
	notBootstrap bool
	admission    bool
	logins       httpapi.LoginLimits
}

type envOption func(*envConfig)

func withHold(d time.Duration) envOption { return func(c *envConfig) { c.hold = d } }

// withAdminCost hashes the bootstrap admin's password with cost.
func withAdminCost(cost int) envOption { return func(c *envConfig) { c.adminCost = cost } }

// withServerCost sets the bcrypt cost the server hashes new passwords with.
func withServerCost(cost int) envOption { return func(c *envConfig) { c.serverCost = cost } }

// withLoginLimits sets the server's failed-login limits.
func withLoginLimits(l httpapi.LoginLimits) envOption { return func(c *envConfig) { c.logins = l } }

// withAdmission makes the FSM decide action admission as a node's does.
func withAdmission() envOption { return func(c *envConfig) { c.admission = true } }

func withoutRoleUsers() envOption { return func(c *envConfig) { c.noRoleUsers = true } }

// withoutCluster leaves the FSM empty, as on a node before any cluster exists.
func withoutCluster() envOption { return func(c *envConfig) { c.notBootstrap = true } }

// newEnv bootstraps a cluster (node 1, admin admin@cnm.local) in a real FSM
// and, through the API, creates one user per role other than admin, so that
// the bootstrap admin stays the only admin.
func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	cfg := envConfig{adminCost: bcrypt.MinCost, serverCost: bcrypt.MinCost}
	for _, o := range opts {
		o(&cfg)
	}
	var fopts []fsm.Option
	if cfg.admission {
		fopts = append(fopts, fsm.WithAdmission(cluster.Admit))
	}
	f := fsm.New(fopts...)
	e := &env{t: t, raft: newFakeRaft(f), fsm: f, users: map[string]testUser{}}
	if !cfg.notBootstrap {
		bootstrap(t, f, cfg.adminCost)
		e.users["admin"] = testUser{UID: 1, Email: adminEmail, Password: adminPassword, Role: "admin"}
	}
	e.cfg = httpapi.Config{Hold: cfg.hold, BcryptCost: cfg.serverCost, Version: "test",
		APIAddr: testNodeAPI, RaftAddr: testNodeRaft, FailedLogins: cfg.logins}
	e.h = e.newServer(e.raft)
	if cfg.notBootstrap || cfg.noRoleUsers {
		return e
	}
	for _, role := range allRoles {
		if role == "admin" {
			continue
		}
		u := testUser{Email: role + "@cnm.local", Password: "pw-" + role, Role: role}
		body := mustMarshal(t, map[string]string{"email": u.Email, "password": u.Password, "name": role + " user", "role": role})
		w := e.call("admin", "POST", "/v1/users", string(body))
		if w.Code != http.StatusOK {
			t.Fatalf("create %s user: %d %s", role, w.Code, w.Body)
		}
		var got userJSON
		decodeInto(t, w, &got)
		u.UID = got.UID
		e.users[role] = u
	}
	return e
}

// fork returns a new node API over a copy of e's state (restored from a
// snapshot), with the same users and a fresh auth cache: cheaper than
// creating the users again.
func (e *env) fork(t testing.TB) *env {
	t.Helper()
	snap, err := e.fsm.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("persist snapshot: %v", err)
	}
	f := fsm.New()
	if err := f.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatalf("restore: %v", err)
	}
	c := &env{t: t, raft: newFakeRaft(f), fsm: f, cfg: e.cfg, users: e.users}
	c.h = c.newServer(c.raft)
	return c
}

// bootstrap applies the bootstrap command at index 1.
func bootstrap(t testing.TB, f *fsm.FSM, adminCost int) {
	t.Helper()
	ca, err := testCA()
	if err != nil {
		t.Fatalf("make cluster CA: %v", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(adminPassword), adminCost)
	if err != nil {
		t.Fatalf("hash admin password: %v", err)
	}
	cmd, err := fsm.Encode(&fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{Name: testClusterName, CreatedAt: time.Now().Unix(),
			CACertPEM: string(ca.CertPEM), CAKeyPEM: string(ca.KeyPEM)},
		Node: fsm.Node{UID: testNodeUID, Addr: "127.0.0.1", APIAddr: testNodeAPI, RaftAddr: testNodeRaft,
			Status: fsm.NodeActive, AcceptServers: true, MaxRedisServers: 100, TotalMemory: 16 << 30,
			SoftwareVersion: "test", JoinedAt: time.Now().Unix(), StartTime: time.Now().Unix()},
		Admin: fsm.User{Email: adminEmail, Name: "Admin", PasswordHash: string(hash)},
	})
	if err != nil {
		t.Fatalf("encode bootstrap: %v", err)
	}
	res := f.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: cmd}).(*fsm.Result)
	if res.Err != nil {
		t.Fatalf("bootstrap: %v", res.Err)
	}
}

// expand replaces {uid:ROLE} in s by the uid of that role's user.
func (e *env) expand(s string) string {
	for role, u := range e.users {
		s = strings.ReplaceAll(s, "{uid:"+role+"}", strconv.Itoa(u.UID))
	}
	return s
}

// request builds a request; as names the role whose credentials it carries
// ("" for none). Paths may hold {uid:ROLE}.
func (e *env) request(as, method, target, body string) *http.Request {
	r := httptest.NewRequest(method, e.expand(target), strings.NewReader(body))
	if as != "" {
		u, ok := e.users[as]
		if !ok {
			e.t.Fatalf("no %s user in this cluster", as)
		}
		r.SetBasicAuth(u.Email, u.Password)
	}
	return r
}

func (e *env) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func (e *env) call(as, method, target, body string) *httptest.ResponseRecorder {
	return e.serve(e.request(as, method, target, body))
}

// callWith sends Basic credentials email:password.
func (e *env) callWith(email, password, method, target, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, e.expand(target), strings.NewReader(body))
	r.SetBasicAuth(email, password)
	return e.serve(r)
}

// state returns a copy of the replicated state.
func (e *env) state() *fsm.State {
	var s *fsm.State
	e.fsm.Read(func(st *fsm.State, _ uint64) { s = st.Clone() })
	return s
}

func (e *env) applied() uint64 { return e.fsm.Applied() }

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return b
}

func decodeInto(t testing.TB, w *httptest.ResponseRecorder, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, w.Body.String(), err)
	}
}

func mustStatus(t testing.TB, w *httptest.ResponseRecorder, want int) {
	t.Helper()
	if w.Code != want {
		t.Fatalf("status = %d, want %d; body %s", w.Code, want, w.Body)
	}
}

// assertError checks the shape every error answer has: status, JSON content
// type, a body of exactly error_code and a non-empty description, and the
// X-Cnm-Index header with the index the node had applied.
func assertError(t testing.TB, e *env, w *httptest.ResponseRecorder, status int, code string) string {
	t.Helper()
	if w.Code != status {
		t.Errorf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatalf("error body %q is not a JSON object: %v", w.Body, err)
	}
	if len(raw) != 2 || raw["error_code"] == nil || raw["description"] == nil {
		t.Errorf("error body %s: want exactly error_code and description", w.Body)
	}
	var body struct {
		Code        string `json:"error_code"`
		Description string `json:"description"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %s: %v", w.Body, err)
	}
	if body.Code != code {
		t.Errorf("error_code = %q, want %q (description %q)", body.Code, code, body.Description)
	}
	if strings.TrimSpace(body.Description) == "" {
		t.Errorf("description is empty")
	}
	assertIndexHeader(t, e, w)
	return body.Description
}

// assertIndexHeader checks X-Cnm-Index against the FSM's applied index.
func assertIndexHeader(t testing.TB, e *env, w *httptest.ResponseRecorder) {
	t.Helper()
	h := w.Header().Get("X-Cnm-Index")
	if h == "" {
		t.Errorf("no X-Cnm-Index header")
		return
	}
	if want := strconv.FormatUint(e.applied(), 10); h != want {
		t.Errorf("X-Cnm-Index = %s, want %s", h, want)
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "mem" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }

// replaceState installs a changed copy of the FSM's state through a snapshot
// restore, keeping the applied index and every user's revision as they are.
func (e *env) replaceState(change func(*fsm.State)) {
	e.t.Helper()
	snap, err := e.fsm.Snapshot()
	if err != nil {
		e.t.Fatalf("snapshot: %v", err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		e.t.Fatalf("persist snapshot: %v", err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(sink.Bytes(), &doc); err != nil {
		e.t.Fatalf("decode snapshot: %v", err)
	}
	var st fsm.State
	if err := json.Unmarshal(doc["state"], &st); err != nil {
		e.t.Fatalf("decode snapshot state: %v", err)
	}
	change(&st)
	doc["state"] = mustMarshal(e.t, &st)
	if err := e.fsm.Restore(io.NopCloser(bytes.NewReader(mustMarshal(e.t, doc)))); err != nil {
		e.t.Fatalf("restore: %v", err)
	}
}
