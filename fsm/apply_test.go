package fsm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"cnm/fsm"
)

// applyCase applies setup at indexes 10, 20, ... (each must succeed), then cmd
// at the next index, and checks the Result and the whole state.
type applyCase struct {
	name  string
	setup []any
	// edit, when set, changes the state after setup through a snapshot
	// restore (see restoredWith), for states no command makes.
	edit func(s *fsm.State)
	cmd  any
	// wantErr is the domain error cmd must be rejected with; a rejected
	// command must leave the state exactly as it was.
	wantErr *fsm.Error
	// want turns a copy of the state before cmd into the state expected
	// after it; nil means the state must not change.
	want func(s *fsm.State, index uint64)
	// wantValue returns what Result.Value must decode to; nil means
	// Result.Value must be empty.
	wantValue func(index uint64) any
}

func runApplyCases(t *testing.T, cases []applyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New()
			for i, p := range tc.setup {
				mustApply(t, f, idx(i+1), p)
			}
			if tc.edit != nil {
				f = restoredWith(t, f, tc.edit)
			}
			before, _ := readState(t, f)
			index := idx(len(tc.setup) + 1)

			res := apply(t, f, index, tc.cmd)

			got, readIndex := readState(t, f)
			if readIndex != index {
				t.Errorf("Read reports index %d after applying entry %d", readIndex, index)
			}
			if a := f.Applied(); a != index {
				t.Errorf("Applied() = %d after applying entry %d", a, index)
			}
			if tc.wantErr != nil {
				if res.Err == nil {
					t.Fatalf("Apply succeeded (value %s), want %s", res.Value, tc.wantErr.Code)
				}
				if !errors.Is(res.Err, tc.wantErr) {
					t.Fatalf("Apply error = %v, want %s", res.Err, tc.wantErr.Code)
				}
				if res.Err.Description == "" {
					t.Errorf("error %s has no description", res.Err.Code)
				}
				if len(res.Value) != 0 {
					t.Errorf("rejected command returned value %s", res.Value)
				}
				assertState(t, got, before)
				return
			}
			if res.Err != nil {
				t.Fatalf("Apply error = %v, want success", res.Err)
			}
			want := before.Clone()
			if tc.want != nil {
				tc.want(want, index)
			}
			assertState(t, got, want)
			checkValue(t, res.Value, tc.wantValue, index)
		})
	}
}

func checkValue(t *testing.T, raw json.RawMessage, wantValue func(uint64) any, index uint64) {
	t.Helper()
	if wantValue == nil {
		if len(raw) != 0 {
			t.Errorf("Result.Value = %s, want none", raw)
		}
		return
	}
	want := wantValue(index)
	got := reflect.New(reflect.TypeOf(want))
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(got.Interface()); err != nil {
		t.Fatalf("decode Result.Value %q as %T: %v", raw, want, err)
	}
	if !reflect.DeepEqual(got.Elem().Interface(), want) {
		t.Errorf("Result.Value = %+v, want %+v", got.Elem().Interface(), want)
	}
}

// stored is the user CreateUser stores for user(key, role).
func stored(key, role string, uid int, revision uint64) fsm.User {
	u := user(key, role)
	u.UID = uid
	u.Revision = revision
	return u
}

// bootAdmin is the admin that bootstrapCmd creates at index rev.
func bootAdmin(rev uint64) fsm.User {
	a := bootstrapCmd().Admin
	a.UID = 1
	a.Role = fsm.RoleAdmin
	a.Revision = rev
	return a
}

func bootstrapped(s *fsm.State, index uint64) {
	b := bootstrapCmd()
	s.Cluster = b.Cluster
	n := b.Node
	s.Nodes[n.UID] = &n
	a := bootAdmin(index)
	s.Users[1] = &a
	s.NextUserUID = 2
}

func putUser(s *fsm.State, u fsm.User) {
	s.Users[u.UID] = &u
	if u.UID >= s.NextUserUID {
		s.NextUserUID = u.UID + 1
	}
}

func TestNew_StartsEmptyAndNotBootstrapped(t *testing.T) {
	f := fsm.New()
	got, index := readState(t, f)
	want := &fsm.State{Nodes: map[int]*fsm.Node{}, Users: map[int]*fsm.User{}, NextUserUID: 1,
		Policy: fsm.DefaultPolicy(), BDBs: map[int]*fsm.BDB{}, NextBDBUID: 1,
		Shards: map[string]*fsm.Shard{}, NextShardUID: 1, Snapshots: map[int][]*fsm.NodeSnapshot{}}
	assertState(t, got, want)
	if index != 0 || f.Applied() != 0 {
		t.Errorf("fresh FSM reports index %d, Applied %d; want 0", index, f.Applied())
	}
	if got.Bootstrapped() {
		t.Error("fresh state reports Bootstrapped")
	}
}

func TestApply_RefusesCommandsBeforeBootstrap(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "add node", cmd: &fsm.AddNode{Node: node(1)}, wantErr: fsm.ErrNotBootstrapped},
		{name: "create user", cmd: &fsm.CreateUser{User: user("bob", fsm.RoleAdmin)}, wantErr: fsm.ErrNotBootstrapped},
		{name: "update user", cmd: &fsm.UpdateUser{UID: 1, Name: ptr("x")}, wantErr: fsm.ErrNotBootstrapped},
		{name: "delete user", cmd: &fsm.DeleteUser{UID: 1}, wantErr: fsm.ErrNotBootstrapped},
		{name: "set node status", cmd: &fsm.SetNodeStatus{UID: 1, Status: fsm.NodeDown}, wantErr: fsm.ErrNotBootstrapped},
		{name: "with an actor", cmd: &fsm.CreateUser{Actor: adminActor, User: user("bob", fsm.RoleAdmin)}, wantErr: fsm.ErrNotBootstrapped},
	})
}

func TestApply_Bootstrap(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name: "creates cluster, first node and admin with uid 1",
			cmd:  bootstrapCmd(),
			want: bootstrapped,
			wantValue: func(index uint64) any {
				return bootAdmin(index)
			},
		},
		{
			name: "admin uid and role come from the state, not the payload",
			cmd: func() any {
				b := bootstrapCmd()
				b.Admin.UID = 42
				b.Admin.Role = fsm.RoleNone
				b.Admin.Revision = 7
				return b
			}(),
			want:      bootstrapped,
			wantValue: func(index uint64) any { return bootAdmin(index) },
		},
		{
			name: "first node keeps its own uid",
			cmd: func() any {
				b := bootstrapCmd()
				b.Node = node(5)
				return b
			}(),
			want: func(s *fsm.State, index uint64) {
				bootstrapped(s, index)
				delete(s.Nodes, 1)
				n := node(5)
				s.Nodes[5] = &n
			},
			wantValue: func(index uint64) any { return bootAdmin(index) },
		},
		{
			name:    "twice is already_bootstrapped",
			setup:   []any{bootstrapCmd()},
			cmd:     bootstrapCmd(),
			wantErr: fsm.ErrAlreadyBootstrapped,
		},
		{
			name:  "twice with another cluster name is already_bootstrapped",
			setup: []any{bootstrapCmd()},
			cmd: func() any {
				b := bootstrapCmd()
				b.Cluster.Name = "other"
				b.Admin.Email = "other@example.com"
				return b
			}(),
			wantErr: fsm.ErrAlreadyBootstrapped,
		},
		{
			name: "without cluster name is invalid_parameter",
			cmd: func() any {
				b := bootstrapCmd()
				b.Cluster.Name = ""
				return b
			}(),
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name: "with node uid 0 is invalid_parameter",
			cmd: func() any {
				b := bootstrapCmd()
				b.Node.UID = 0
				return b
			}(),
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name: "without admin email is invalid_parameter",
			cmd: func() any {
				b := bootstrapCmd()
				b.Admin.Email = ""
				return b
			}(),
			wantErr: fsm.ErrInvalidParameter,
		},
	})
}

func TestApply_AddNode(t *testing.T) {
	withNode2 := []any{bootstrapCmd(), &fsm.AddNode{Actor: adminActor, Node: node(2)}}
	moved := func(uid int, edit func(n *fsm.Node)) *fsm.AddNode {
		n := node(uid)
		edit(&n)
		return &fsm.AddNode{Actor: adminActor, Node: n}
	}
	runApplyCases(t, []applyCase{
		{
			name:  "adds a new node",
			setup: []any{bootstrapCmd()},
			cmd:   &fsm.AddNode{Actor: adminActor, Node: node(2)},
			want: func(s *fsm.State, _ uint64) {
				n := node(2)
				s.Nodes[2] = &n
			},
			wantValue: func(uint64) any { return node(2) },
		},
		{
			name:  "retry with the same addresses keeps the first record",
			setup: withNode2,
			cmd: moved(2, func(n *fsm.Node) {
				n.TotalMemory = 1
				n.JoinedAt = 1800000000
				n.SoftwareVersion = "7.4.3"
			}),
			wantValue: func(uint64) any { return node(2) },
		},
		{
			name:      "retry of the bootstrap node keeps its record",
			setup:     []any{bootstrapCmd()},
			cmd:       &fsm.AddNode{Actor: adminActor, Node: node(1)},
			wantValue: func(uint64) any { return node(1) },
		},
		{
			name:    "same uid with another raft address is node_exists",
			setup:   withNode2,
			cmd:     moved(2, func(n *fsm.Node) { n.RaftAddr = "10.0.0.99:7000" }),
			wantErr: fsm.ErrNodeExists,
		},
		{
			name:    "same uid with another api address is node_exists",
			setup:   withNode2,
			cmd:     moved(2, func(n *fsm.Node) { n.APIAddr = "10.0.0.99:9443" }),
			wantErr: fsm.ErrNodeExists,
		},
		{
			name:    "other uid with a taken raft address is node_exists",
			setup:   withNode2,
			cmd:     moved(3, func(n *fsm.Node) { n.RaftAddr = node(2).RaftAddr }),
			wantErr: fsm.ErrNodeExists,
		},
		{
			name:    "other uid with a taken api address is node_exists",
			setup:   withNode2,
			cmd:     moved(3, func(n *fsm.Node) { n.APIAddr = node(1).APIAddr }),
			wantErr: fsm.ErrNodeExists,
		},
		{
			name:    "uid 0 is invalid_parameter",
			setup:   []any{bootstrapCmd()},
			cmd:     moved(0, func(*fsm.Node) {}),
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "negative uid is invalid_parameter",
			setup:   []any{bootstrapCmd()},
			cmd:     moved(-2, func(*fsm.Node) {}),
			wantErr: fsm.ErrInvalidParameter,
		},
	})
}

func TestApply_CreateUser(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name:  "assigns the next uid and the entry index as revision",
			setup: []any{bootstrapCmd()},
			cmd:   createUser(adminActor, "bob", fsm.RoleDBViewer),
			want: func(s *fsm.State, index uint64) {
				putUser(s, stored("bob", fsm.RoleDBViewer, 2, index))
			},
			wantValue: func(index uint64) any { return stored("bob", fsm.RoleDBViewer, 2, index) },
		},
		{
			name: "uids increase",
			setup: []any{
				bootstrapCmd(),
				createUser(adminActor, "bob", fsm.RoleDBViewer),
				createUser(adminActor, "carol", fsm.RoleAdmin),
			},
			cmd: createUser(adminActor, "dave", fsm.RoleNone),
			want: func(s *fsm.State, index uint64) {
				putUser(s, stored("dave", fsm.RoleNone, 4, index))
			},
			wantValue: func(index uint64) any { return stored("dave", fsm.RoleNone, 4, index) },
		},
		{
			name: "uids of deleted users are not reused",
			setup: []any{
				bootstrapCmd(),
				createUser(adminActor, "bob", fsm.RoleDBViewer),
				&fsm.DeleteUser{Actor: adminActor, UID: 2},
			},
			cmd: createUser(adminActor, "carol", fsm.RoleDBViewer),
			want: func(s *fsm.State, index uint64) {
				putUser(s, stored("carol", fsm.RoleDBViewer, 3, index))
			},
			wantValue: func(index uint64) any { return stored("carol", fsm.RoleDBViewer, 3, index) },
		},
		{
			name:  "uid and revision in the payload are ignored",
			setup: []any{bootstrapCmd()},
			cmd: func() any {
				c := createUser(adminActor, "bob", fsm.RoleClusterMember)
				c.User.UID = 1
				c.User.Revision = 3
				return c
			}(),
			want: func(s *fsm.State, index uint64) {
				putUser(s, stored("bob", fsm.RoleClusterMember, 2, index))
			},
			wantValue: func(index uint64) any { return stored("bob", fsm.RoleClusterMember, 2, index) },
		},
		{
			name:    "email of an existing user is user_exists",
			setup:   []any{bootstrapCmd(), createUser(adminActor, "bob", fsm.RoleDBViewer)},
			cmd:     createUser(adminActor, "bob", fsm.RoleAdmin),
			wantErr: fsm.ErrUserExists,
		},
		{
			name:  "email of the bootstrap admin is user_exists",
			setup: []any{bootstrapCmd()},
			cmd: &fsm.CreateUser{Actor: adminActor, User: fsm.User{
				Email: bootstrapCmd().Admin.Email, Role: fsm.RoleNone, PasswordHash: "h",
			}},
			wantErr: fsm.ErrUserExists,
		},
		{
			name:    "unknown role is invalid_parameter",
			setup:   []any{bootstrapCmd()},
			cmd:     createUser(adminActor, "bob", "superuser"),
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "empty role is invalid_parameter",
			setup:   []any{bootstrapCmd()},
			cmd:     createUser(adminActor, "bob", ""),
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:  "missing email is invalid_parameter",
			setup: []any{bootstrapCmd()},
			cmd: func() any {
				c := createUser(adminActor, "bob", fsm.RoleNone)
				c.User.Email = ""
				return c
			}(),
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:  "missing password is invalid_parameter",
			setup: []any{bootstrapCmd()},
			cmd: func() any {
				c := createUser(adminActor, "bob", fsm.RoleNone)
				c.User.PasswordHash = ""
				return c
			}(),
			wantErr: fsm.ErrInvalidParameter,
		},
	})
}

func TestApply_UpdateUser(t *testing.T) {
	withBob := []any{bootstrapCmd(), createUser(adminActor, "bob", fsm.RoleDBViewer)}
	withBobAndCarol := append(withBob[:len(withBob):len(withBob)], createUser(adminActor, "carol", fsm.RoleDBMember))
	withTwoAdmins := []any{bootstrapCmd(), createUser(adminActor, "carol", fsm.RoleAdmin)}

	// bobAfter is bob (uid 2, created at index 20) after edit at index.
	bobAfter := func(edit func(u *fsm.User)) (func(*fsm.State, uint64), func(uint64) any) {
		after := func(index uint64) fsm.User {
			u := stored("bob", fsm.RoleDBViewer, 2, index)
			edit(&u)
			return u
		}
		return func(s *fsm.State, index uint64) { putUser(s, after(index)) },
			func(index uint64) any { return after(index) }
	}
	fieldCase := func(name string, cmd *fsm.UpdateUser, edit func(u *fsm.User)) applyCase {
		want, value := bobAfter(edit)
		cmd.Actor = adminActor
		cmd.UID = 2
		return applyCase{name: name, setup: withBob, cmd: cmd, want: want, wantValue: value}
	}

	runApplyCases(t, []applyCase{
		fieldCase("changes email",
			&fsm.UpdateUser{Email: ptr("robert@example.com")},
			func(u *fsm.User) { u.Email = "robert@example.com" }),
		fieldCase("changes name",
			&fsm.UpdateUser{Name: ptr("Robert")},
			func(u *fsm.User) { u.Name = "Robert" }),
		fieldCase("changes role",
			&fsm.UpdateUser{Role: ptr(fsm.RoleClusterViewer)},
			func(u *fsm.User) { u.Role = fsm.RoleClusterViewer }),
		fieldCase("promotes to admin",
			&fsm.UpdateUser{Role: ptr(fsm.RoleAdmin)},
			func(u *fsm.User) { u.Role = fsm.RoleAdmin }),
		fieldCase("changes password hash",
			&fsm.UpdateUser{PasswordHash: ptr("$2a$10$new")},
			func(u *fsm.User) { u.PasswordHash = "$2a$10$new" }),
		fieldCase("changes every field at once",
			&fsm.UpdateUser{
				Email:        ptr("rob@example.com"),
				Name:         ptr("Rob"),
				Role:         ptr(fsm.RoleUserManager),
				PasswordHash: ptr("$2a$10$rob"),
			},
			func(u *fsm.User) {
				u.Email = "rob@example.com"
				u.Name = "Rob"
				u.Role = fsm.RoleUserManager
				u.PasswordHash = "$2a$10$rob"
			}),
		fieldCase("keeps its own email",
			&fsm.UpdateUser{Email: ptr("bob@example.com"), Name: ptr("Bobby")},
			func(u *fsm.User) { u.Name = "Bobby" }),
		fieldCase("empty name is allowed",
			&fsm.UpdateUser{Name: ptr("")},
			func(u *fsm.User) { u.Name = "" }),
		{
			name:    "email of another user is user_exists",
			setup:   withBobAndCarol,
			cmd:     &fsm.UpdateUser{Actor: adminActor, UID: 2, Email: ptr("carol@example.com")},
			wantErr: fsm.ErrUserExists,
		},
		{
			name:    "empty email is invalid_parameter",
			setup:   withBob,
			cmd:     &fsm.UpdateUser{Actor: adminActor, UID: 2, Email: ptr("")},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "unknown role is invalid_parameter",
			setup:   withBob,
			cmd:     &fsm.UpdateUser{Actor: adminActor, UID: 2, Role: ptr("root")},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "a valid field does not land when another is rejected",
			setup:   withBob,
			cmd:     &fsm.UpdateUser{Actor: adminActor, UID: 2, Name: ptr("Robert"), Role: ptr("root")},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "a new email does not land when the role is rejected",
			setup:   withBob,
			cmd:     &fsm.UpdateUser{Actor: adminActor, UID: 2, Email: ptr("robert@example.com"), Role: ptr("root")},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "a new password does not land when the last admin would be demoted",
			setup:   withBob,
			cmd:     &fsm.UpdateUser{Actor: adminActor, UID: 1, PasswordHash: ptr("$2a$10$x"), Email: ptr("root@example.com"), Role: ptr(fsm.RoleNone)},
			wantErr: fsm.ErrLastAdmin,
		},
		{
			name:    "unknown uid is user_not_found",
			setup:   withBob,
			cmd:     &fsm.UpdateUser{Actor: adminActor, UID: 99, Name: ptr("x")},
			wantErr: fsm.ErrUserNotFound,
		},
		{
			name:    "demoting the last admin is last_admin",
			setup:   withBob,
			cmd:     &fsm.UpdateUser{Actor: adminActor, UID: 1, Role: ptr(fsm.RoleUserManager)},
			wantErr: fsm.ErrLastAdmin,
		},
		{
			name:    "demoting the last admin with other changes is last_admin",
			setup:   withBob,
			cmd:     &fsm.UpdateUser{Actor: adminActor, UID: 1, Name: ptr("Ex"), Role: ptr(fsm.RoleNone)},
			wantErr: fsm.ErrLastAdmin,
		},
		{
			name:  "demoting an admin while another admin exists",
			setup: withTwoAdmins,
			cmd:   &fsm.UpdateUser{Actor: adminActor, UID: 1, Role: ptr(fsm.RoleNone)},
			want: func(s *fsm.State, index uint64) {
				a := bootAdmin(index)
				a.Role = fsm.RoleNone
				putUser(s, a)
			},
			wantValue: func(index uint64) any {
				a := bootAdmin(index)
				a.Role = fsm.RoleNone
				return a
			},
		},
		{
			name:  "the last admin may keep the admin role",
			setup: withBob,
			cmd:   &fsm.UpdateUser{Actor: adminActor, UID: 1, Role: ptr(fsm.RoleAdmin), Name: ptr("Root")},
			want: func(s *fsm.State, index uint64) {
				a := bootAdmin(index)
				a.Name = "Root"
				putUser(s, a)
			},
			wantValue: func(index uint64) any {
				a := bootAdmin(index)
				a.Name = "Root"
				return a
			},
		},
	})
}

func TestApply_DeleteUser(t *testing.T) {
	withBob := []any{bootstrapCmd(), createUser(adminActor, "bob", fsm.RoleDBViewer)}
	runApplyCases(t, []applyCase{
		{
			name:  "removes the user",
			setup: withBob,
			cmd:   &fsm.DeleteUser{Actor: adminActor, UID: 2},
			want:  func(s *fsm.State, _ uint64) { delete(s.Users, 2) },
		},
		{
			name:  "removes an admin while another admin exists",
			setup: []any{bootstrapCmd(), createUser(adminActor, "carol", fsm.RoleAdmin)},
			cmd:   &fsm.DeleteUser{Actor: fsm.Actor{UID: 2, Revision: idx(2)}, UID: 1},
			want:  func(s *fsm.State, _ uint64) { delete(s.Users, 1) },
		},
		{
			name:    "a new email does not land when the role is rejected",
			setup:   withBob,
			cmd:     &fsm.UpdateUser{Actor: adminActor, UID: 2, Email: ptr("robert@example.com"), Role: ptr("root")},
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "a new password does not land when the last admin would be demoted",
			setup:   withBob,
			cmd:     &fsm.UpdateUser{Actor: adminActor, UID: 1, PasswordHash: ptr("$2a$10$x"), Email: ptr("root@example.com"), Role: ptr(fsm.RoleNone)},
			wantErr: fsm.ErrLastAdmin,
		},
		{
			name:    "unknown uid is user_not_found",
			setup:   withBob,
			cmd:     &fsm.DeleteUser{Actor: adminActor, UID: 3},
			wantErr: fsm.ErrUserNotFound,
		},
		{
			name:    "deleted uid is user_not_found",
			setup:   append(withBob[:len(withBob):len(withBob)], &fsm.DeleteUser{Actor: adminActor, UID: 2}),
			cmd:     &fsm.DeleteUser{Actor: adminActor, UID: 2},
			wantErr: fsm.ErrUserNotFound,
		},
		{
			name:    "refuses the last admin",
			setup:   withBob,
			cmd:     &fsm.DeleteUser{Actor: adminActor, UID: 1},
			wantErr: fsm.ErrLastAdmin,
		},
		{
			name:    "refuses the last admin on behalf of the cluster",
			setup:   withBob,
			cmd:     &fsm.DeleteUser{UID: 1},
			wantErr: fsm.ErrLastAdmin,
		},
	})
}

func TestApply_SetNodeStatus(t *testing.T) {
	withNode2 := []any{bootstrapCmd(), &fsm.AddNode{Actor: adminActor, Node: node(2)}}
	var cases []applyCase
	for _, status := range []string{fsm.NodeProvisioning, fsm.NodeDown, fsm.NodeDecommissioning, fsm.NodeActive} {
		changed := func() fsm.Node {
			n := node(2)
			n.Status = status
			return n
		}
		cases = append(cases, applyCase{
			name:  "moves a node to " + status,
			setup: withNode2,
			cmd:   &fsm.SetNodeStatus{Actor: adminActor, UID: 2, Status: status},
			want: func(s *fsm.State, _ uint64) {
				n := changed()
				s.Nodes[2] = &n
			},
			wantValue: func(uint64) any { return changed() },
		})
	}
	cases = append(cases,
		applyCase{
			name:    "unknown node is node_not_found",
			setup:   withNode2,
			cmd:     &fsm.SetNodeStatus{Actor: adminActor, UID: 3, Status: fsm.NodeDown},
			wantErr: fsm.ErrNodeNotFound,
		},
		applyCase{
			name:    "unknown status is invalid_parameter",
			setup:   withNode2,
			cmd:     &fsm.SetNodeStatus{Actor: adminActor, UID: 2, Status: "sleeping"},
			wantErr: fsm.ErrInvalidParameter,
		},
		applyCase{
			name:    "empty status is invalid_parameter",
			setup:   withNode2,
			cmd:     &fsm.SetNodeStatus{Actor: adminActor, UID: 2},
			wantErr: fsm.ErrInvalidParameter,
		},
	)
	runApplyCases(t, cases)
}

// TestApply_ActorMustBeCurrent checks every command that names an actor
// against the same history: the admin (uid 1) changed at index 40, carol
// (uid 2) is an admin created at 20, bob (uid 3) was created at 30, and dave
// (uid 4) was created at 50 and deleted at 60. Commands land at 70.
func TestApply_ActorMustBeCurrent(t *testing.T) {
	setup := []any{
		bootstrapCmd(),
		createUser(adminActor, "carol", fsm.RoleAdmin),
		createUser(adminActor, "bob", fsm.RoleDBViewer),
		&fsm.UpdateUser{Actor: adminActor, UID: 1, Name: ptr("Renamed Admin")},
		createUser(fsm.Actor{UID: 1, Revision: idx(4)}, "dave", fsm.RoleAdmin),
		&fsm.DeleteUser{Actor: fsm.Actor{UID: 1, Revision: idx(4)}, UID: 4},
	}
	commands := []struct {
		name      string
		cmd       func(a fsm.Actor) any
		want      func(s *fsm.State, index uint64)
		wantValue func(index uint64) any
	}{
		{
			name: "add node",
			cmd:  func(a fsm.Actor) any { return &fsm.AddNode{Actor: a, Node: node(2)} },
			want: func(s *fsm.State, _ uint64) {
				n := node(2)
				s.Nodes[2] = &n
			},
			wantValue: func(uint64) any { return node(2) },
		},
		{
			name: "create user",
			cmd:  func(a fsm.Actor) any { return createUser(a, "erin", fsm.RoleNone) },
			want: func(s *fsm.State, index uint64) {
				putUser(s, stored("erin", fsm.RoleNone, 5, index))
			},
			wantValue: func(index uint64) any { return stored("erin", fsm.RoleNone, 5, index) },
		},
		{
			name: "update user",
			cmd:  func(a fsm.Actor) any { return &fsm.UpdateUser{Actor: a, UID: 3, Name: ptr("B")} },
			want: func(s *fsm.State, index uint64) {
				u := stored("bob", fsm.RoleDBViewer, 3, index)
				u.Name = "B"
				putUser(s, u)
			},
			wantValue: func(index uint64) any {
				u := stored("bob", fsm.RoleDBViewer, 3, index)
				u.Name = "B"
				return u
			},
		},
		{
			name: "delete user",
			cmd:  func(a fsm.Actor) any { return &fsm.DeleteUser{Actor: a, UID: 3} },
			want: func(s *fsm.State, _ uint64) { delete(s.Users, 3) },
		},
		{
			name: "set node status",
			cmd: func(a fsm.Actor) any {
				return &fsm.SetNodeStatus{Actor: a, UID: 1, Status: fsm.NodeDecommissioning}
			},
			want: func(s *fsm.State, _ uint64) { s.Nodes[1].Status = fsm.NodeDecommissioning },
			wantValue: func(uint64) any {
				n := node(1)
				n.Status = fsm.NodeDecommissioning
				return n
			},
		},
	}
	rejected := []struct {
		name  string
		actor fsm.Actor
	}{
		{"stale revision", fsm.Actor{UID: 1, Revision: bootIndex}},
		{"revision from the future", fsm.Actor{UID: 1, Revision: idx(7)}},
		{"deleted user", fsm.Actor{UID: 4, Revision: idx(5)}},
		{"user that never existed", fsm.Actor{UID: 9, Revision: idx(4)}},
		{"revision of another user", fsm.Actor{UID: 3, Revision: idx(2)}},
		{"uid without revision", fsm.Actor{UID: 1}},
	}
	accepted := []struct {
		name  string
		actor fsm.Actor
	}{
		{"current admin", fsm.Actor{UID: 1, Revision: idx(4)}},
		{"other current admin", fsm.Actor{UID: 2, Revision: idx(2)}},
		{"zero actor", fsm.Actor{}},
	}

	var cases []applyCase
	for _, c := range commands {
		for _, r := range rejected {
			cases = append(cases, applyCase{
				name:    c.name + "/" + r.name + " is unauthorized",
				setup:   setup,
				cmd:     c.cmd(r.actor),
				wantErr: fsm.ErrUnauthorized,
			})
		}
		for _, a := range accepted {
			cases = append(cases, applyCase{
				name:      c.name + "/" + a.name + " is allowed",
				setup:     setup,
				cmd:       c.cmd(a.actor),
				want:      c.want,
				wantValue: c.wantValue,
			})
		}
	}
	// The actor is checked before anything else, so a stale actor learns
	// nothing about the target.
	cases = append(cases,
		applyCase{
			name:    "stale actor on an unknown user is unauthorized",
			setup:   setup,
			cmd:     &fsm.DeleteUser{Actor: fsm.Actor{UID: 1, Revision: bootIndex}, UID: 99},
			wantErr: fsm.ErrUnauthorized,
		},
		applyCase{
			name:    "stale actor deleting the last admin is unauthorized",
			setup:   []any{bootstrapCmd(), &fsm.UpdateUser{Actor: adminActor, UID: 1, Name: ptr("x")}},
			cmd:     &fsm.DeleteUser{Actor: adminActor, UID: 1},
			wantErr: fsm.ErrUnauthorized,
		},
	)
	runApplyCases(t, cases)
}

// TestApply_RejectedCommandKeepsActorRevision shows that a rejected write
// does not touch the revision of anyone, so the same actor stays valid.
func TestApply_RejectedCommandKeepsActorRevision(t *testing.T) {
	f := fsm.New()
	mustApply(t, f, idx(1), bootstrapCmd())
	res := apply(t, f, idx(2), &fsm.UpdateUser{Actor: adminActor, UID: 1, Role: ptr(fsm.RoleNone)})
	if res.Err == nil || !errors.Is(res.Err, fsm.ErrLastAdmin) {
		t.Fatalf("demoting the only admin: error %v, want %s", res.Err, fsm.ErrLastAdmin.Code)
	}
	mustApply(t, f, idx(3), createUser(adminActor, "bob", fsm.RoleNone))
}

// TestApply_SameLogSameState replays one log into two state machines, one of
// them in a single pass and one with a snapshot in the middle, and expects
// identical states.
func TestApply_SameLogSameState(t *testing.T) {
	log := []any{
		bootstrapCmd(),
		&fsm.AddNode{Actor: adminActor, Node: node(2)},
		createUser(adminActor, "carol", fsm.RoleAdmin),
		createUser(adminActor, "bob", fsm.RoleDBViewer),
		&fsm.UpdateUser{Actor: adminActor, UID: 3, Role: ptr(fsm.RoleClusterMember)},
		&fsm.DeleteUser{Actor: fsm.Actor{UID: 2, Revision: idx(3)}, UID: 1},
		createUser(fsm.Actor{UID: 2, Revision: idx(3)}, "dave", fsm.RoleNone),
	}
	a := fsm.New()
	for i, p := range log {
		mustApply(t, a, idx(i+1), p)
	}
	b := fsm.New()
	for i, p := range log[:4] {
		mustApply(t, b, idx(i+1), p)
	}
	b = roundTrip(t, b)
	for i, p := range log[4:] {
		mustApply(t, b, idx(i+5), p)
	}
	sa, ia := readState(t, a)
	sb, ib := readState(t, b)
	assertState(t, sb, sa)
	if ia != ib {
		t.Errorf("applied %d and %d after the same log", ia, ib)
	}
}
