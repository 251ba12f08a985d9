package fsm_test

import (
	"testing"

	"cnm/fsm"
)

// TestApply_OnlyAdminsGrantAdmin runs the same user commands for four
// actors over one history: admin 1 (bootstrap, index 10), mgr (uid 2, a
// user_manager, 20), bob (uid 3, a db_viewer, 30), carol (uid 4, an admin,
// 40) and cm (uid 5, a cluster_member, 50). Commands land at 60. Only an
// admin, or the cluster itself, may give the admin role or change or delete
// an admin user; user_manager must not be able to raise itself.
func TestApply_OnlyAdminsGrantAdmin(t *testing.T) {
	setup := []any{
		bootstrapCmd(),
		createUser(adminActor, "mgr", fsm.RoleUserManager),
		createUser(adminActor, "bob", fsm.RoleDBViewer),
		createUser(adminActor, "carol", fsm.RoleAdmin),
		createUser(adminActor, "cm", fsm.RoleClusterMember),
	}
	mgr := stored("mgr", fsm.RoleUserManager, 2, idx(2))
	bob := stored("bob", fsm.RoleDBViewer, 3, idx(3))
	carol := stored("carol", fsm.RoleAdmin, 4, idx(4))

	// updated is u after edit at index.
	updated := func(u fsm.User, edit func(u *fsm.User)) func(uint64) fsm.User {
		return func(index uint64) fsm.User {
			v := u
			edit(&v)
			v.Revision = index
			return v
		}
	}
	type command struct {
		name string
		cmd  func(a fsm.Actor) any
		// touchesAdmin: only an admin or the cluster may do it.
		touchesAdmin bool
		want         func(s *fsm.State, index uint64)
		wantValue    func(index uint64) any
	}
	updateCmd := func(name string, touchesAdmin bool, u fsm.User, cmd fsm.UpdateUser, edit func(u *fsm.User)) command {
		after := updated(u, edit)
		return command{
			name: name,
			cmd: func(a fsm.Actor) any {
				c := cmd
				c.Actor = a
				c.UID = u.UID
				return &c
			},
			touchesAdmin: touchesAdmin,
			want:         func(s *fsm.State, index uint64) { putUser(s, after(index)) },
			wantValue:    func(index uint64) any { return after(index) },
		}
	}
	createCmd := func(key, role string, touchesAdmin bool) command {
		return command{
			name:         "create a " + role,
			cmd:          func(a fsm.Actor) any { return createUser(a, key, role) },
			touchesAdmin: touchesAdmin,
			want:         func(s *fsm.State, index uint64) { putUser(s, stored(key, role, 6, index)) },
			wantValue:    func(index uint64) any { return stored(key, role, 6, index) },
		}
	}
	deleteCmd := func(name string, touchesAdmin bool, uid int) command {
		return command{
			name:         name,
			cmd:          func(a fsm.Actor) any { return &fsm.DeleteUser{Actor: a, UID: uid} },
			touchesAdmin: touchesAdmin,
			want:         func(s *fsm.State, _ uint64) { delete(s.Users, uid) },
		}
	}
	role := func(r string) func(u *fsm.User) { return func(u *fsm.User) { u.Role = r } }
	commands := []command{
		createCmd("dan", fsm.RoleAdmin, true),
		createCmd("erin", fsm.RoleUserManager, false),
		createCmd("fred", fsm.RoleNone, false),
		updateCmd("promote a user to admin", true, bob,
			fsm.UpdateUser{Role: ptr(fsm.RoleAdmin)}, role(fsm.RoleAdmin)),
		updateCmd("promote the user_manager itself to admin", true, mgr,
			fsm.UpdateUser{Role: ptr(fsm.RoleAdmin)}, role(fsm.RoleAdmin)),
		updateCmd("promote the user_manager itself to admin with other changes", true, mgr,
			fsm.UpdateUser{Role: ptr(fsm.RoleAdmin), Name: ptr("Boss")},
			func(u *fsm.User) { u.Role, u.Name = fsm.RoleAdmin, "Boss" }),
		updateCmd("rename an admin", true, carol,
			fsm.UpdateUser{Name: ptr("Caroline")}, func(u *fsm.User) { u.Name = "Caroline" }),
		updateCmd("change an admin's password", true, bootAdmin(idx(1)),
			fsm.UpdateUser{PasswordHash: ptr("$2a$10$taken")}, func(u *fsm.User) { u.PasswordHash = "$2a$10$taken" }),
		updateCmd("change an admin's email", true, carol,
			fsm.UpdateUser{Email: ptr("mallory@example.com")}, func(u *fsm.User) { u.Email = "mallory@example.com" }),
		updateCmd("demote an admin", true, carol,
			fsm.UpdateUser{Role: ptr(fsm.RoleNone)}, role(fsm.RoleNone)),
		updateCmd("keep an admin's role and rename", true, carol,
			fsm.UpdateUser{Role: ptr(fsm.RoleAdmin), Name: ptr("C")}, func(u *fsm.User) { u.Name = "C" }),
		deleteCmd("delete an admin", true, 4),
		updateCmd("rename a user", false, bob,
			fsm.UpdateUser{Name: ptr("Robert")}, func(u *fsm.User) { u.Name = "Robert" }),
		updateCmd("change a user's role to user_manager", false, bob,
			fsm.UpdateUser{Role: ptr(fsm.RoleUserManager)}, role(fsm.RoleUserManager)),
		updateCmd("rename the user_manager itself", false, mgr,
			fsm.UpdateUser{Name: ptr("Manager")}, func(u *fsm.User) { u.Name = "Manager" }),
		deleteCmd("delete a user", false, 3),
		deleteCmd("delete the user_manager itself", false, 2),
	}
	actors := []struct {
		name   string
		actor  fsm.Actor
		admins bool // may touch admins
	}{
		{"user_manager", fsm.Actor{UID: 2, Revision: idx(2)}, false},
		{"cluster_member", fsm.Actor{UID: 5, Revision: idx(5)}, false},
		{"admin", fsm.Actor{UID: 4, Revision: idx(4)}, true},
		{"bootstrap admin", adminActor, true},
		{"zero actor", fsm.Actor{}, true},
	}
	var cases []applyCase
	for _, c := range commands {
		for _, a := range actors {
			tc := applyCase{name: a.name + "/" + c.name, setup: setup, cmd: c.cmd(a.actor)}
			if c.touchesAdmin && !a.admins {
				tc.name += " is forbidden"
				tc.wantErr = fsm.ErrForbidden
			} else {
				tc.want, tc.wantValue = c.want, c.wantValue
			}
			cases = append(cases, tc)
		}
	}
	cases = append(cases,
		// The actor is checked first: a stale user_manager is told its
		// credentials changed, not that it lacks the admin role.
		applyCase{
			name:    "stale user_manager creating an admin is unauthorized",
			setup:   with(setup, &fsm.UpdateUser{Actor: adminActor, UID: 2, Name: ptr("m")}),
			cmd:     createUser(fsm.Actor{UID: 2, Revision: idx(2)}, "dan", fsm.RoleAdmin),
			wantErr: fsm.ErrUnauthorized,
		},
		// A user_manager demoted from admin lost the right with it.
		applyCase{
			name: "an admin demoted to user_manager can no longer create admins",
			setup: with(setup,
				&fsm.UpdateUser{Actor: adminActor, UID: 4, Role: ptr(fsm.RoleUserManager)}),
			cmd:     createUser(fsm.Actor{UID: 4, Revision: idx(6)}, "dan", fsm.RoleAdmin),
			wantErr: fsm.ErrForbidden,
		},
		// Refusals keep their own codes where the role does not matter.
		applyCase{
			name:    "user_manager updating an unknown user is user_not_found",
			setup:   setup,
			cmd:     &fsm.UpdateUser{Actor: fsm.Actor{UID: 2, Revision: idx(2)}, UID: 9, Name: ptr("x")},
			wantErr: fsm.ErrUserNotFound,
		},
		applyCase{
			name:    "user_manager creating a user with a taken email is user_exists",
			setup:   setup,
			cmd:     createUser(fsm.Actor{UID: 2, Revision: idx(2)}, "bob", fsm.RoleNone),
			wantErr: fsm.ErrUserExists,
		},
	)
	runApplyCases(t, cases)
}
