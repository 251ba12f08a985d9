package raftnode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"runtime/debug"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// ErrStorageFault marks every error caused by this node's own storage: a
// write that failed (full disk, I/O error) or data that fails its checksum.
// Such a node has stopped raft; see Node.StorageFault.
var ErrStorageFault = errors.New("storage fault")

// ErrCorrupt: stored data does not match its checksum, or cannot be decoded.
var ErrCorrupt = errors.New("stored data is corrupt")

// StorageFaultError says what failed, where, and why. It matches both
// ErrStorageFault and its cause with errors.Is (a full disk matches
// syscall.ENOSPC, corruption ErrCorrupt).
type StorageFaultError struct {
	// Path is the file or directory that failed (raft.db, a snapshot).
	Path string
	// Op is what was being done: "read log entry", "store log entries"...
	Op string
	// Index is the log index concerned, 0 when none.
	Index uint64
	// Write tells a failed write (retrying later may work) from data
	// that was read back wrong (it never will).
	Write bool
	Err   error
}

func (e *StorageFaultError) Error() string {
	if e.Index != 0 {
		return fmt.Sprintf("storage fault in %s: %s %d: %v", e.Path, e.Op, e.Index, e.Err)
	}
	return fmt.Sprintf("storage fault in %s: %s: %v", e.Path, e.Op, e.Err)
}

func (e *StorageFaultError) Unwrap() []error { return []error{ErrStorageFault, e.Err} }

// Every entry written through checkedStore has its Data prefixed with
// sumMagic, a version byte and a CRC-32C over the index, term, type, data
// and extensions. bolt checksums only its meta pages, so without this a
// flipped bit in an entry would be applied as if it were data. Entries
// written before the checksum existed have no prefix and are read as they
// are: fsm commands start with a small command type and configurations
// with a msgpack map header, never with 0xff.
const (
	sumMagic   = "\xffck"
	sumVersion = 1
	sumHeader  = len(sumMagic) + 1 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// entrySum covers everything in an entry that the FSM or raft acts on.
// AppendedAt is left out: it only feeds metrics, and msgpack's time
// encoding is not worth trusting to round-trip bit for bit.
func entrySum(index, term uint64, typ raft.LogType, data, ext []byte) uint32 {
	var hdr [8 + 8 + 1 + 4 + 4]byte
	binary.BigEndian.PutUint64(hdr[0:], index)
	binary.BigEndian.PutUint64(hdr[8:], term)
	hdr[16] = byte(typ)
	binary.BigEndian.PutUint32(hdr[17:], uint32(len(data)))
	binary.BigEndian.PutUint32(hdr[21:], uint32(len(ext)))
	h := crc32.New(castagnoli)
	h.Write(hdr[:])
	h.Write(data)
	h.Write(ext)
	return h.Sum32()
}

// seal returns a copy of l with the checksum prefix. raft keeps using the
// entries it hands to StoreLogs (a leader applies them from memory, a
// follower decodes configurations from them), so they are never changed.
func seal(l *raft.Log) *raft.Log {
	c := *l
	c.Data = make([]byte, sumHeader+len(l.Data))
	copy(c.Data, sumMagic)
	c.Data[len(sumMagic)] = sumVersion
	binary.BigEndian.PutUint32(c.Data[len(sumMagic)+1:], entrySum(l.Index, l.Term, l.Type, l.Data, l.Extensions))
	copy(c.Data[sumHeader:], l.Data)
	return &c
}

// unseal checks the entry read for index and strips its prefix. The index
// asked for is summed, not the stored one, so an entry found under the
// wrong key (a flipped bit in a bolt key) fails too.
func unseal(index uint64, l *raft.Log) error {
	if l.Index != index {
		return fmt.Errorf("%w: entry stored under index %d says %d", ErrCorrupt, index, l.Index)
	}
	if !bytes.HasPrefix(l.Data, []byte(sumMagic)) {
		return nil // written before entries carried a checksum
	}
	if len(l.Data) < sumHeader {
		return fmt.Errorf("%w: checksum header cut short (%d bytes)", ErrCorrupt, len(l.Data))
	}
	if v := l.Data[len(sumMagic)]; v != sumVersion {
		return fmt.Errorf("%w: unknown checksum version %d", ErrCorrupt, v)
	}
	stored := binary.BigEndian.Uint32(l.Data[len(sumMagic)+1:])
	data := l.Data[sumHeader:]
	if got := entrySum(index, l.Term, l.Type, data, l.Extensions); got != stored {
		return fmt.Errorf("%w: checksum %08x, computed %08x", ErrCorrupt, stored, got)
	}
	if len(data) == 0 {
		data = nil
	}
	l.Data = data
	return nil
}

// Stable-store values (raft's current term and vote) carry the same kind
// of prefix, the checksum over key and value: a flipped bit in the term or
// vote could make the node vote twice in one term. Values written before
// have no marker; a legacy uint64 is 8 big-endian bytes, as raft-boltdb
// stores them, and no term or index starts with ff 63 6b.
func valueSum(key, val []byte) uint32 {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(key)))
	h := crc32.New(castagnoli)
	h.Write(hdr[:])
	h.Write(key)
	h.Write(val)
	return h.Sum32()
}

func sealValue(key, val []byte) []byte {
	b := make([]byte, sumHeader+len(val))
	copy(b, sumMagic)
	b[len(sumMagic)] = sumVersion
	binary.BigEndian.PutUint32(b[len(sumMagic)+1:], valueSum(key, val))
	copy(b[sumHeader:], val)
	return b
}

func unsealValue(key, b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, []byte(sumMagic)) {
		return b, nil // written before values carried a checksum
	}
	if len(b) < sumHeader {
		return nil, fmt.Errorf("%w: checksum header cut short (%d bytes)", ErrCorrupt, len(b))
	}
	if v := b[len(sumMagic)]; v != sumVersion {
		return nil, fmt.Errorf("%w: unknown checksum version %d", ErrCorrupt, v)
	}
	stored := binary.BigEndian.Uint32(b[len(sumMagic)+1:])
	val := b[sumHeader:]
	if got := valueSum(key, val); got != stored {
		return nil, fmt.Errorf("%w: checksum %08x, computed %08x", ErrCorrupt, stored, got)
	}
	return val, nil
}

// raft's stable-store keys. raft panics when it cannot save the current
// term.
const keyCurrentTerm = "CurrentTerm"

var stableKeys = []string{keyCurrentTerm, "LastVoteTerm", "LastVoteCand"}

// checkedStore sits between raft and the bolt store. It seals and checks
// log entries and stable values, turns bolt panics on a garbled file into errors, and
// reports every failure other than "not found" as a storage fault, so the
// node can stop raft instead of serving or acting on what it cannot vouch
// for.
//
// raft panics on some store errors (a log entry it must apply, the
// current term it must save), and a panic in raft's goroutines cannot be
// recovered. So once raft runs, those calls end the calling raft goroutine
// with runtime.Goexit after recording the fault: deferred calls run (raft
// counts its goroutines in deferred calls, and a leader's deferred
// clean-up fails its in-flight futures), and the node shuts raft down.
// Every raft goroutine that reaches the store is one raft started itself;
// the node's own reads use the methods that return errors.
type checkedStore struct {
	logs   raft.LogStore
	stable raft.StableStore
	path   string // the file both live in, for fault messages

	running atomic.Bool // raft's goroutines are up: see above
	onFault atomic.Pointer[func(*StorageFaultError)]
}

var (
	_ raft.LogStore    = (*checkedStore)(nil)
	_ raft.StableStore = (*checkedStore)(nil)
)

// guard runs f, turning a panic in the store (bolt on a garbled file,
// including a fault on its memory map) into an error.
func guard(f func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: store panicked: %v", ErrCorrupt, r)
		}
	}()
	return f()
}

func (s *checkedStore) fault(op string, index uint64, write bool, err error) error {
	e := &StorageFaultError{Path: s.path, Op: op, Index: index, Write: write, Err: err}
	if f := s.onFault.Load(); f != nil {
		(*f)(e)
	}
	return e
}

// exitIfRunning ends the calling raft goroutine after a fault where raft
// would panic on the error.
func (s *checkedStore) exitIfRunning() {
	if s.running.Load() {
		runtime.Goexit()
	}
}

func (s *checkedStore) FirstIndex() (uint64, error) {
	var idx uint64
	err := guard(func() (err error) { idx, err = s.logs.FirstIndex(); return err })
	if err != nil {
		return 0, s.fault("read first log index", 0, false, err)
	}
	return idx, nil
}

func (s *checkedStore) LastIndex() (uint64, error) {
	var idx uint64
	err := guard(func() (err error) { idx, err = s.logs.LastIndex(); return err })
	if err != nil {
		return 0, s.fault("read last log index", 0, false, err)
	}
	return idx, nil
}

// GetLog is raft's: see checkedStore for why it may not return.
func (s *checkedStore) GetLog(index uint64, l *raft.Log) error {
	err := s.getLog(index, l)
	if errors.Is(err, ErrStorageFault) {
		s.exitIfRunning()
	}
	return err
}

// getLog reads and checks one entry; raft.ErrLogNotFound is no fault.
func (s *checkedStore) getLog(index uint64, l *raft.Log) error {
	err := guard(func() error { return s.logs.GetLog(index, l) })
	if errors.Is(err, raft.ErrLogNotFound) {
		return err
	}
	if err == nil {
		err = unseal(index, l)
	}
	if err != nil {
		return s.fault("read log entry", index, false, err)
	}
	return nil
}

func (s *checkedStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *checkedStore) StoreLogs(logs []*raft.Log) error {
	sealed := make([]*raft.Log, len(logs))
	for i, l := range logs {
		sealed[i] = seal(l)
	}
	if err := guard(func() error { return s.logs.StoreLogs(sealed) }); err != nil {
		var first uint64
		if len(logs) > 0 {
			first = logs[0].Index
		}
		return s.fault("store log entries from", first, true, err)
	}
	return nil
}

func (s *checkedStore) DeleteRange(min, max uint64) error {
	if err := guard(func() error { return s.logs.DeleteRange(min, max) }); err != nil {
		return s.fault(fmt.Sprintf("delete log entries %d to", min), max, true, err)
	}
	return nil
}

// notFound: raft tells a missing stable key by the error's text.
func notFound(err error) bool { return err != nil && err.Error() == "not found" }

func (s *checkedStore) Set(key, val []byte) error {
	sealed := sealValue(key, val)
	if err := guard(func() error { return s.stable.Set(key, sealed) }); err != nil {
		return s.fault("save "+string(key), 0, true, err)
	}
	return nil
}

func (s *checkedStore) Get(key []byte) ([]byte, error) {
	var raw []byte
	err := guard(func() (err error) { raw, err = s.stable.Get(key); return err })
	if notFound(err) {
		return nil, err
	}
	var val []byte
	if err == nil {
		val, err = unsealValue(key, raw)
	}
	if err != nil {
		return nil, s.fault("read "+string(key), 0, false, err)
	}
	return val, nil
}

// SetUint64 stores val as raft-boltdb does (8 bytes, big-endian), sealed.
func (s *checkedStore) SetUint64(key []byte, val uint64) error {
	err := s.Set(key, binary.BigEndian.AppendUint64(nil, val))
	if err != nil && string(key) == keyCurrentTerm {
		s.exitIfRunning()
	}
	return err
}

func (s *checkedStore) GetUint64(key []byte) (uint64, error) {
	val, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(val) != 8 {
		return 0, s.fault("read "+string(key), 0, false, fmt.Errorf("%w: %d bytes for a uint64", ErrCorrupt, len(val)))
	}
	return binary.BigEndian.Uint64(val), nil
}

// verifyStable reads raft's stable keys back through the checksums.
func verifyStable(s *checkedStore) error {
	for _, k := range stableKeys {
		if _, err := s.Get([]byte(k)); err != nil && !notFound(err) {
			return err
		}
	}
	return nil
}
