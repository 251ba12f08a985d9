package control

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"golang.org/x/crypto/bcrypt"

	"cnm/fsm"
)

// Raft is what the control layer needs of the local raft member.
type Raft interface {
	ID() int
	Apply(ctx context.Context, cmd []byte) (*fsm.Result, error)
}

// Service carries out writes on the leader.
type Service struct {
	raft       Raft
	fsm        *fsm.FSM
	bcryptCost int
	// applied observes how long each committed proposal took.
	applied func(time.Duration)
}

// New makes a Service proposing through r; applied, if not nil, is told
// how long each committed proposal took.
func New(r Raft, f *fsm.FSM, bcryptCost int, applied func(time.Duration)) *Service {
	if applied == nil {
		applied = func(time.Duration) {}
	}
	return &Service{raft: r, fsm: f, bcryptCost: bcryptCost, applied: applied}
}

// Propose encodes a command, applies it through raft on this (leading)
// node and returns the FSM's result; domain errors come back as
// *fsm.Error, raft's as raftnode's.
func (s *Service) Propose(ctx context.Context, payload any) (*fsm.Result, error) {
	cmd, err := fsm.Encode(payload)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res, err := s.raft.Apply(ctx, cmd)
	if err == nil {
		s.applied(time.Since(start))
	}
	return res, err
}

// proposeFor proposes payload and decodes the value Apply returned into a
// new T.
func proposeFor[T any](ctx context.Context, s *Service, payload any) (*T, error) {
	res, err := s.Propose(ctx, payload)
	if err != nil {
		return nil, err
	}
	out := new(T)
	if err := json.Unmarshal(res.Value, out); err != nil {
		return nil, fmt.Errorf("decode the result of %T: %w", payload, err)
	}
	return out, nil
}

// hashPassword hashes a password with the service's bcrypt cost.
func (s *Service) hashPassword(pw string) (string, error) {
	b, err := bcrypt.GenerateFromPassword([]byte(pw), s.bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(b), nil
}
