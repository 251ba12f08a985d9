package control

import (
	"context"
	"errors"
	"strconv"

	"cnm/cluster"
	"cnm/fsm"
)

// placementAttempts bounds how often a creation is planned again when
// another change landed between planning and applying.
const placementAttempts = 5

// CreateBDB places a new database's shards and endpoint and creates it,
// planning again when another change landed in between.
func (s *Service) CreateBDB(ctx context.Context, actor fsm.Actor, b fsm.BDB) (*fsm.BDB, error) {
	for attempt := 1; ; attempt++ {
		placement, endpoint, err := s.placeBDB(b)
		if err != nil {
			return nil, err
		}
		out, err := proposeFor[fsm.BDB](ctx, s, &fsm.CreateBDB{Actor: actor, BDB: b, Placement: placement, EndpointNode: endpoint})
		if errors.Is(err, fsm.ErrPlacementConflict) && attempt < placementAttempts {
			continue
		}
		return out, err
	}
}

func (s *Service) placeBDB(b fsm.BDB) (placement []int, endpoint int, err error) {
	exists := false
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		for _, o := range st.BDBs {
			exists = exists || o.Name == b.Name
		}
		if !exists {
			placement, endpoint, err = cluster.PlanBDB(st, b)
		}
	})
	if exists {
		return nil, 0, fsm.ErrBDBExists.With("a database named " + strconv.Quote(b.Name) + " already exists")
	}
	return placement, endpoint, err
}

// DeleteBDB deletes a database and its shards.
func (s *Service) DeleteBDB(ctx context.Context, actor fsm.Actor, uid int) error {
	_, err := s.Propose(ctx, &fsm.DeleteBDB{Actor: actor, UID: uid})
	return err
}

// NewUser is a user to create; the password is hashed here.
type NewUser struct {
	Email, Password, Name, Role string
}

// CreateUser creates a user.
func (s *Service) CreateUser(ctx context.Context, actor fsm.Actor, nu NewUser) (*fsm.User, error) {
	hash, err := s.hashPassword(nu.Password)
	if err != nil {
		return nil, err
	}
	u := fsm.User{Email: nu.Email, Role: nu.Role, Name: nu.Name, PasswordHash: hash}
	return proposeFor[fsm.User](ctx, s, &fsm.CreateUser{Actor: actor, User: u})
}

// UserChange lists what to change of a user; nil fields stay.
type UserChange struct {
	Email, Password, Name, Role *string
}

// UpdateUser changes a user.
func (s *Service) UpdateUser(ctx context.Context, actor fsm.Actor, uid int, c UserChange) (*fsm.User, error) {
	cmd := &fsm.UpdateUser{Actor: actor, UID: uid, Email: c.Email, Name: c.Name, Role: c.Role}
	if c.Password != nil {
		hash, err := s.hashPassword(*c.Password)
		if err != nil {
			return nil, err
		}
		cmd.PasswordHash = &hash
	}
	return proposeFor[fsm.User](ctx, s, cmd)
}

// DeleteUser deletes a user.
func (s *Service) DeleteUser(ctx context.Context, actor fsm.Actor, uid int) error {
	_, err := s.Propose(ctx, &fsm.DeleteUser{Actor: actor, UID: uid})
	return err
}

// UpdatePolicy changes the cluster policy and returns it.
func (s *Service) UpdatePolicy(ctx context.Context, cmd *fsm.UpdatePolicy) (*fsm.Policy, error) {
	return proposeFor[fsm.Policy](ctx, s, cmd)
}

// UpdateNode changes a node's settings.
func (s *Service) UpdateNode(ctx context.Context, cmd *fsm.UpdateNode) error {
	exists := false
	s.fsm.Read(func(st *fsm.State, _ uint64) { _, exists = st.Nodes[cmd.UID] })
	if !exists {
		return fsm.NoSuchNode(cmd.UID)
	}
	_, err := s.Propose(ctx, cmd)
	return err
}

// DeleteSnapshot deletes one of a node's maintenance snapshots.
func (s *Service) DeleteSnapshot(ctx context.Context, actor fsm.Actor, node int, name string) error {
	_, err := s.Propose(ctx, &fsm.DeleteSnapshot{Actor: actor, Node: node, Name: name})
	return err
}

// RotateCert asks a node to replace its certificate; the node record shows
// the rotations asked for.
func (s *Service) RotateCert(ctx context.Context, actor fsm.Actor, uid int) (*fsm.Node, error) {
	return proposeFor[fsm.Node](ctx, s, &fsm.RotateNodeCert{Actor: actor, UID: uid})
}
