package httpapi

import (
	"net/http"
	"net/mail"
	"strconv"
	"time"
	"unicode"

	"github.com/gorilla/mux"

	"cnm/control"
	"cnm/fsm"
)

func muxVar(r *http.Request, name string) string { return mux.Vars(r)[name] }

// nodeView is a node as the API shows it (SPEC §5).
type nodeView struct {
	UID             int    `json:"uid"`
	Addr            string `json:"addr"`
	APIAddr         string `json:"api_addr"`
	RaftAddr        string `json:"raft_addr"`
	Status          string `json:"status"`
	AcceptServers   bool   `json:"accept_servers"`
	MaxRedisServers int    `json:"max_redis_servers"`
	TotalMemory     int64  `json:"total_memory"`
	ShardCount      int    `json:"shard_count"`
	ShardList       []int  `json:"shard_list"`
	RackID          string `json:"rack_id"`
	SoftwareVersion string `json:"software_version"`
	// Uptime is absent while the node is down or its start is unknown.
	Uptime *int64 `json:"uptime,omitempty"`
}

// viewNodeWith shows node n with the given shards.
func viewNodeWith(n *fsm.Node, shards []string, now time.Time) nodeView {
	v := viewNode(n, now)
	v.ShardList = shardInts(shards)
	v.ShardCount = len(v.ShardList)
	return v
}

func viewNode(n *fsm.Node, now time.Time) nodeView {
	v := nodeView{
		UID: n.UID, Addr: n.Addr, APIAddr: n.APIAddr, RaftAddr: n.RaftAddr, Status: shownStatus(n),
		AcceptServers: acceptsServers(n), MaxRedisServers: n.MaxRedisServers, TotalMemory: n.TotalMemory,
		ShardList: []int{}, RackID: n.RackID, SoftwareVersion: n.SoftwareVersion,
	}
	if up, ok := nodeUptime(n, now); ok {
		v.Uptime = &up
	}
	return v
}

// acceptsServers is accept_servers as shown (SPEC §5): false while the node
// is in maintenance or being removed, whatever its own setting says, since
// placement gives it no shards then.
func acceptsServers(n *fsm.Node) bool {
	return n.AcceptServers && !n.Maintenance && !n.Removing
}

// nodeUptime is how long node n's cnmd has been running, in seconds, as
// the leader recorded its start; false while the node is down or before
// the leader has heard from it.
func nodeUptime(n *fsm.Node, now time.Time) (int64, bool) {
	if n.Status == fsm.NodeDown || n.StartTime == 0 {
		return 0, false
	}
	return max(0, now.Unix()-n.StartTime), true
}

// shardInts turns shard uids (decimal strings in the state) into the int
// uids of the shard_list fields (SPEC §5).
func shardInts(ids []string) []int {
	out := make([]int, 0, len(ids))
	for _, id := range ids {
		if n, err := strconv.Atoi(id); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// shownStatus is a node's status as the API shows it: a live node that a
// remove action is taking out is "decommissioning" (SPEC §5). The state
// keeps liveness (active/down) and the removal (Removing) apart, so the
// leader's liveness checks never undo the removal's mark.
func shownStatus(n *fsm.Node) string {
	if n.Removing && n.Status == fsm.NodeActive {
		return fsm.NodeDecommissioning
	}
	return n.Status
}

func (s *Server) listNodes(w http.ResponseWriter, _ *http.Request, _ principal) error {
	now := time.Now()
	var out []nodeView
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		byNode := st.ShardUIDsByNode()
		for _, uid := range st.NodeUIDs() {
			out = append(out, viewNodeWith(st.Nodes[uid], byNode[uid], now))
		}
	})
	if out == nil {
		out = []nodeView{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request, _ principal) error {
	return s.showOne(w, r, "node", func(st *fsm.State, uid int) (any, error) {
		n, ok := st.Nodes[uid]
		if !ok {
			return nil, fsm.NoSuchNode(uid)
		}
		return viewNodeWith(n, st.ShardUIDsByNode()[uid], time.Now()), nil
	})
}

// showOne answers with the view of the object whose uid the path names, or
// the error view gives when there is none.
func (s *Server) showOne(w http.ResponseWriter, r *http.Request, what string, view func(st *fsm.State, uid int) (any, error)) error {
	uid, err := pathUID(r, what)
	if err != nil {
		return err
	}
	var v any
	s.fsm.Read(func(st *fsm.State, _ uint64) { v, err = view(st, uid) })
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// deleteOne deletes the object whose uid the path names with del, and
// answers with its uid.
func deleteOne(w http.ResponseWriter, r *http.Request, what string, del func(uid int) error) error {
	uid, err := pathUID(r, what)
	if err != nil {
		return err
	}
	if err := decodeBody(r, &struct{}{}); err != nil {
		return err
	}
	if err := del(uid); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]int{"uid": uid})
	return nil
}

type memberView struct {
	UID      int    `json:"uid"`
	APIAddr  string `json:"api_addr"`
	RaftAddr string `json:"raft_addr"`
	Role     string `json:"role"`
	Suffrage string `json:"suffrage"`
}

type clusterView struct {
	Name         string       `json:"name"`
	CreatedAt    int64        `json:"created_at"`
	Leader       int          `json:"leader"`
	NodeUID      int          `json:"node_uid"`
	NodeRole     string       `json:"node_role"`
	Term         uint64       `json:"term"`
	AppliedIndex uint64       `json:"applied_index"`
	CommitIndex  uint64       `json:"commit_index"`
	LastIndex    uint64       `json:"last_index"`
	Members      []memberView `json:"members"`
}

func (s *Server) getCluster(w http.ResponseWriter, _ *http.Request, _ principal) error {
	servers, err := s.raft.Servers()
	if err != nil {
		return err
	}
	leader, _ := s.raft.Leader()
	commit, last := s.raft.Indexes()
	v := clusterView{Leader: leader, NodeUID: s.raft.ID(), NodeRole: s.raft.Role(), Term: s.raft.Term(),
		CommitIndex: commit, LastIndex: last, Members: []memberView{}}
	s.fsm.Read(func(st *fsm.State, applied uint64) {
		v.Name, v.CreatedAt, v.AppliedIndex = st.Cluster.Name, st.Cluster.CreatedAt, applied
		for _, srv := range servers {
			m := memberView{UID: srv.UID, RaftAddr: srv.RaftAddr, Role: "follower", Suffrage: "nonvoter"}
			if srv.Voter {
				m.Suffrage = "voter"
			}
			if srv.UID == leader {
				m.Role = "leader"
			}
			if n, ok := st.Nodes[srv.UID]; ok {
				m.APIAddr = n.APIAddr
			}
			v.Members = append(v.Members, m)
		}
	})
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) getBootstrap(w http.ResponseWriter, _ *http.Request, _ principal) error {
	// The full API runs only on a node told to create or join a cluster
	// (by flag or by POST /v1/bootstrap/...): until the cluster state
	// arrives, that setup is under way. An idle node serves NewSetupHandler.
	state := SetupInitiated
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		if st.Bootstrapped() {
			state = "completed"
		}
	})
	writeJSON(w, http.StatusOK, map[string]any{
		"bootstrap_status": map[string]string{"state": state},
		"local_node_info": map[string]any{
			"uid": s.raft.ID(), "api_addr": s.apiAddr, "raft_addr": s.raftAddr,
			"software_version": s.version, "uptime": int64(time.Since(s.started).Seconds()),
		},
	})
	return nil
}

// userView is a user as the API shows it: never the password hash.
type userView struct {
	UID   int    `json:"uid"`
	Email string `json:"email"`
	Name  string `json:"name"`
	Role  string `json:"role"`
}

func viewUser(u *fsm.User) userView {
	return userView{UID: u.UID, Email: u.Email, Name: u.Name, Role: u.Role}
}

func (s *Server) listUsers(w http.ResponseWriter, _ *http.Request, _ principal) error {
	out := []userView{}
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		for _, uid := range st.UserUIDs() {
			out = append(out, viewUser(st.Users[uid]))
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, _ principal) error {
	return s.showOne(w, r, "user", func(st *fsm.State, uid int) (any, error) {
		u, ok := st.Users[uid]
		if !ok {
			return nil, fsm.ErrUserNotFound.With("user " + itoa(uid) + " does not exist")
		}
		return viewUser(u), nil
	})
}

// userBody is the body of POST /v1/users and PUT /v1/users/{uid}.
type userBody struct {
	Email    *string `json:"email"`
	Password *string `json:"password"`
	Name     *string `json:"name"`
	Role     *string `json:"role"`
}

const maxPasswordBytes = 72 // bcrypt ignores anything longer

func (b *userBody) validate(create bool) error {
	if create {
		for field, v := range map[string]*string{"email": b.Email, "password": b.Password, "role": b.Role} {
			if v == nil {
				return fsm.ErrInvalidParameter.With("field \"" + field + "\" is required")
			}
		}
	} else if b.Email == nil && b.Password == nil && b.Name == nil && b.Role == nil {
		return fsm.ErrInvalidParameter.With("nothing to update: give email, password, name or role")
	}
	if b.Email != nil {
		if a, err := mail.ParseAddress(*b.Email); err != nil || a.Address != *b.Email || len(*b.Email) > 254 || !plainText(*b.Email) {
			return fsm.ErrInvalidParameter.With("field \"email\" must be an email address, got " + quote(*b.Email))
		}
	}
	if b.Password != nil && (len(*b.Password) == 0 || len(*b.Password) > maxPasswordBytes) {
		return fsm.ErrInvalidParameter.With("field \"password\" must be 1 to 72 bytes long")
	}
	if b.Name != nil && len(*b.Name) > 256 {
		return fsm.ErrInvalidParameter.With("field \"name\" must be at most 256 bytes long")
	}
	if b.Role != nil && !fsm.ValidRole(*b.Role) {
		return fsm.ErrInvalidParameter.With("field \"role\" must be one of admin, cluster_member, cluster_viewer, db_member, db_viewer, user_manager, none; got " + quote(*b.Role))
	}
	return nil
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, p principal) error {
	var b userBody
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	if err := b.validate(true); err != nil {
		return err
	}
	nu := control.NewUser{Email: *b.Email, Password: *b.Password, Role: *b.Role}
	if b.Name != nil {
		nu.Name = *b.Name
	}
	u, err := s.ctl.CreateUser(r.Context(), p.actor(), nu)
	return answerUser(w, u, err)
}

func (s *Server) updateUser(w http.ResponseWriter, r *http.Request, p principal) error {
	uid, err := pathUID(r, "user")
	if err != nil {
		return err
	}
	var b userBody
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	if err := b.validate(false); err != nil {
		return err
	}
	u, err := s.ctl.UpdateUser(r.Context(), p.actor(), uid, control.UserChange{Email: b.Email, Password: b.Password, Name: b.Name, Role: b.Role})
	return answerUser(w, u, err)
}

func answerUser(w http.ResponseWriter, u *fsm.User, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewUser(u))
	return nil
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, p principal) error {
	return deleteOne(w, r, "user", func(uid int) error { return s.ctl.DeleteUser(r.Context(), p.actor(), uid) })
}

func (s *Server) getPermissions(w http.ResponseWriter, _ *http.Request, p principal) error {
	roles := map[string][]string{}
	for _, role := range fsm.Roles {
		roles[role] = PermissionsOf(role)
	}
	writeJSON(w, http.StatusOK, map[string]any{"role": p.Role, "permissions": PermissionsOf(p.Role), "roles": roles})
	return nil
}

// plainText reports whether s holds only printable characters and no
// invisible ones (zero-width spaces, joiners, direction marks): an email
// that looks like another must not be a different account.
func plainText(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
