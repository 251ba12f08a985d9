package fsm

import (
	"slices"
)

// authored is a command made on behalf of an authenticated user.
type authored interface{ author() Actor }

func (p *AddNode) author() Actor        { return p.Actor }
func (p *CreateUser) author() Actor     { return p.Actor }
func (p *UpdateUser) author() Actor     { return p.Actor }
func (p *DeleteUser) author() Actor     { return p.Actor }
func (p *SetNodeStatus) author() Actor  { return p.Actor }
func (p *CreateBDB) author() Actor      { return p.Actor }
func (p *DeleteBDB) author() Actor      { return p.Actor }
func (p *UpdatePolicy) author() Actor   { return p.Actor }
func (p *UpdateNode) author() Actor     { return p.Actor }
func (p *DeleteSnapshot) author() Actor { return p.Actor }
func (p *SubmitAction) author() Actor   { return p.Actor }
func (p *CancelAction) author() Actor   { return p.Actor }

// checkActor ties a write to the identity that was authenticated for it. The
// zero Actor is the cluster itself (writes the leader makes on its own).
func (s *State) checkActor(a Actor) *Error {
	if a.UID == 0 {
		return nil
	}
	u, ok := s.Users[a.UID]
	if !ok || u.Revision != a.Revision {
		return Errorf(ErrUnauthorized, "the credentials of user %d changed while the request was in flight", a.UID)
	}
	return nil
}

// checkGrantsAdmin keeps user managers from making admins or changing
// them: only an admin may give the admin role or touch an admin user, so
// that user_manager cannot raise itself to admin.
func (s *State) checkGrantsAdmin(a Actor, newRole string, target int) *Error {
	if a.UID == 0 {
		return nil
	}
	if actor := s.Users[a.UID]; actor != nil && actor.Role == RoleAdmin {
		return nil
	}
	if newRole == RoleAdmin {
		return Errorf(ErrForbidden, "only an admin may give the admin role")
	}
	if t, ok := s.Users[target]; ok && t.Role == RoleAdmin {
		return Errorf(ErrForbidden, "only an admin may change or delete admin user %d", target)
	}
	return nil
}

func (s *State) applyBootstrap(p *Bootstrap, index uint64) (any, *Error) {
	if s.Bootstrapped() {
		return nil, Errorf(ErrAlreadyBootstrapped, "cluster %q already exists", s.Cluster.Name)
	}
	if p.Cluster.Name == "" || p.Node.UID <= 0 || !validNodeStatus(p.Node.Status) || p.Admin.Email == "" || p.Admin.PasswordHash == "" {
		return nil, Errorf(ErrInvalidParameter, "bootstrap needs a cluster name, a node with uid and status, and an admin with a password")
	}
	s.Cluster = p.Cluster
	n := p.Node
	s.Nodes[n.UID] = &n
	admin := p.Admin
	admin.UID = s.NextUserUID
	admin.Role = RoleAdmin
	admin.Revision = index
	s.Users[admin.UID] = &admin
	s.NextUserUID++
	return admin, nil
}

func (s *State) applyAddNode(p *AddNode) (any, *Error) {
	n := p.Node
	if n.UID <= 0 {
		return nil, Errorf(ErrInvalidParameter, "node uid must be a positive integer, got %d", n.UID)
	}
	if !validNodeStatus(n.Status) {
		return nil, Errorf(ErrInvalidParameter, "node status %q is not a status", n.Status)
	}
	for _, uid := range s.NodeUIDs() {
		o := s.Nodes[uid]
		if o.UID == n.UID {
			continue
		}
		if o.RaftAddr == n.RaftAddr || o.APIAddr == n.APIAddr {
			return nil, Errorf(ErrNodeExists, "node %d already uses address %s or %s", o.UID, n.APIAddr, n.RaftAddr)
		}
	}
	if old, ok := s.Nodes[n.UID]; ok {
		if old.RaftAddr != n.RaftAddr || old.APIAddr != n.APIAddr {
			return nil, Errorf(ErrNodeExists, "node uid %d is already taken by %s", n.UID, old.APIAddr)
		}
		// A join retried after a lost answer: keep the first record,
		// with the certificate issued for the retry (the node uses the
		// newest one; the others are revoked).
		c := *old
		c.Certs = slices.Clone(old.Certs)
		for _, ref := range n.Certs {
			if !slices.Contains(c.Certs, ref) {
				c.Certs = append(c.Certs, ref)
			}
		}
		s.Nodes[n.UID] = &c
		return c, nil
	}
	s.Nodes[n.UID] = &n
	return n, nil
}

func (s *State) applyCreateUser(p *CreateUser, index uint64) (any, *Error) {
	if err := s.checkGrantsAdmin(p.Actor, p.User.Role, 0); err != nil {
		return nil, err
	}
	u := p.User
	if !ValidRole(u.Role) {
		return nil, Errorf(ErrInvalidParameter, "role %q is not a role", u.Role)
	}
	if u.Email == "" || u.PasswordHash == "" {
		return nil, Errorf(ErrInvalidParameter, "a user needs an email and a password")
	}
	if s.UserByEmail(u.Email) != nil {
		return nil, Errorf(ErrUserExists, "a user with email %q already exists", u.Email)
	}
	u.UID = s.NextUserUID
	u.Revision = index
	s.NextUserUID++
	s.Users[u.UID] = &u
	return u, nil
}

func (s *State) applyUpdateUser(p *UpdateUser, index uint64) (any, *Error) {
	role := ""
	if p.Role != nil {
		role = *p.Role
	}
	if err := s.checkGrantsAdmin(p.Actor, role, p.UID); err != nil {
		return nil, err
	}
	cur, ok := s.Users[p.UID]
	if !ok {
		return nil, Errorf(ErrUserNotFound, "user %d does not exist", p.UID)
	}
	u := *cur
	if p.Email != nil {
		if o := s.UserByEmail(*p.Email); o != nil && o.UID != u.UID {
			return nil, Errorf(ErrUserExists, "a user with email %q already exists", *p.Email)
		}
		if *p.Email == "" {
			return nil, Errorf(ErrInvalidParameter, "email must not be empty")
		}
		u.Email = *p.Email
	}
	if p.Name != nil {
		u.Name = *p.Name
	}
	if p.Role != nil {
		if !ValidRole(*p.Role) {
			return nil, Errorf(ErrInvalidParameter, "role %q is not a role", *p.Role)
		}
		if cur.Role == RoleAdmin && *p.Role != RoleAdmin && s.adminCount() == 1 {
			return nil, Errorf(ErrLastAdmin, "user %d is the last admin; make another admin first", u.UID)
		}
		u.Role = *p.Role
	}
	if p.PasswordHash != nil {
		u.PasswordHash = *p.PasswordHash
	}
	u.Revision = index
	s.Users[u.UID] = &u
	return u, nil
}

func (s *State) applyDeleteUser(p *DeleteUser) (any, *Error) {
	if err := s.checkGrantsAdmin(p.Actor, "", p.UID); err != nil {
		return nil, err
	}
	u, ok := s.Users[p.UID]
	if !ok {
		return nil, Errorf(ErrUserNotFound, "user %d does not exist", p.UID)
	}
	if u.Role == RoleAdmin && s.adminCount() == 1 {
		return nil, Errorf(ErrLastAdmin, "user %d is the last admin and cannot be deleted", u.UID)
	}
	delete(s.Users, p.UID)
	return nil, nil
}

func (s *State) applySetNodeStatus(p *SetNodeStatus) (any, *Error) {
	n, ok := s.Nodes[p.UID]
	if !ok {
		return nil, NoSuchNode(p.UID)
	}
	if !validNodeStatus(p.Status) {
		return nil, Errorf(ErrInvalidParameter, "node status %q is not a status", p.Status)
	}
	c := *n
	c.Status = p.Status
	if p.StartTime != 0 {
		c.StartTime = p.StartTime
	}
	s.Nodes[p.UID] = &c
	return c, nil
}

func validNodeStatus(st string) bool {
	switch st {
	case NodeActive, NodeDown, NodeProvisioning, NodeDecommissioning:
		return true
	}
	return false
}
