package fsm

// shardLog lists the uids of the shards that Apply wrote, in order, so that
// a reader that saw the state at one position learns what changed since
// without comparing every shard: a node agent looks at the few shards a
// step changed, not at the thousands it did not. It is not replicated and
// no part of the model: only the FSM's live state keeps one, and a restored
// state starts a new one that no earlier position falls in.
type shardLog struct {
	base uint64   // the position of uids[0]
	uids []string // may repeat a uid
}

// shardLogMax bounds the log: a reader further behind than this many
// writes compares everything instead.
const shardLogMax = 1 << 16

func (l *shardLog) end() uint64 { return l.base + uint64(len(l.uids)) }

// wrote records that Apply wrote (added, changed or deleted) shard uid.
// States without a log (copies, states built by hand) record nothing.
func (s *State) wrote(uid string) {
	l := s.log
	if l == nil {
		return
	}
	if len(l.uids) >= shardLogMax {
		keep := shardLogMax / 2
		l.base += uint64(len(l.uids) - keep)
		l.uids = append(make([]string, 0, shardLogMax), l.uids[len(l.uids)-keep:]...)
	}
	l.uids = append(l.uids, uid)
}

// ShardWrites returns the uids of the shards written since position from
// (each at least once, maybe more) and the position now. ok is false when
// the log does not reach back to from, or the state keeps none: then the
// reader must compare every shard. The slice is the log's own, valid only
// while the caller holds the FSM's read lock (inside FSM.Read).
func (s *State) ShardWrites(from uint64) (uids []string, now uint64, ok bool) {
	l := s.log
	if l == nil {
		return nil, 0, false
	}
	now = l.end()
	if from < l.base || from > now {
		return nil, now, false
	}
	return l.uids[from-l.base:], now, true
}

// keepLog gives s a new log that starts past every position of prev, so
// that a reader of the state s replaced sees that it must compare every
// shard.
func (s *State) keepLog(prev *shardLog) {
	var base uint64
	if prev != nil {
		base = prev.end() + 1
	}
	s.log = &shardLog{base: base}
}
