package agent

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"cnm/fsm"
)

// FileBackend keeps each shard as <dir>/<uid>.data with its metadata in
// <uid>.meta, and its persistence file as <uid>.rdb or <uid>.aof. Its role
// is in <uid>.role, which a switch overwrites in place; where that record
// is missing or cut short, the metadata's role stands.
type FileBackend struct {
	dir     string
	limiter *Limiter
	mu      sync.Mutex // serialises metadata and file installs
	// writing serialises writes of one shard: two copies of a uid never
	// interleave (each also has its own temp file).
	writing keyedMutex
}

// keyedMutex is one mutex per key (shard uid), made on first use.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*sync.Mutex
}

func (k *keyedMutex) get(key string) *sync.Mutex {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]*sync.Mutex{}
	}
	m, ok := k.m[key]
	if !ok {
		m = &sync.Mutex{}
		k.m[key] = m
	}
	return m
}

// NewFileBackend stores shards in dir; copies it receives are capped by
// limiter (nil: unlimited).
func NewFileBackend(dir string, limiter *Limiter) (*FileBackend, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create shard dir %s: %w", dir, err)
	}
	// Leftovers of copies interrupted by a crash are never valid shards.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read shard dir %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return &FileBackend{dir: dir, limiter: limiter}, nil
}

type meta struct {
	Info
}

func (b *FileBackend) path(uid, ext string) string { return filepath.Join(b.dir, uid+ext) }

func validUID(uid string) error {
	if uid == "" || strings.ContainsAny(uid, `/\.`) {
		return fmt.Errorf("shard uid %q: %w", uid, ErrNoShard)
	}
	return nil
}

// content is the deterministic data of a shard: a stream seeded by its uid,
// so that every node materialising or verifying a shard agrees on its bytes.
func content(uid string) io.Reader {
	seed := sha256.Sum256([]byte("cnm shard " + uid))
	return &chachaReader{r: rand.NewChaCha8(seed)}
}

type chachaReader struct{ r *rand.ChaCha8 }

func (c *chachaReader) Read(p []byte) (int, error) {
	n := len(p) &^ 7
	if n == 0 {
		var tmp [8]byte
		binary.LittleEndian.PutUint64(tmp[:], c.r.Uint64())
		return copy(p, tmp[:]), nil
	}
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(p[i:], c.r.Uint64())
	}
	return n, nil
}

// Materialise writes a new shard's data file from its uid.
func (b *FileBackend) Materialise(ctx context.Context, s Spec) error {
	if err := validUID(s.UID); err != nil {
		return err
	}
	return b.write(ctx, s, io.LimitReader(content(s.UID), s.Size), "", nil, nil)
}

// CopyFrom fetches the shard from src and installs it, through commit when
// it is not nil, if size and checksum match; otherwise nothing of it
// remains.
func (b *FileBackend) CopyFrom(ctx context.Context, s Spec, src Source, commit Commit) error {
	if err := validUID(s.UID); err != nil {
		return err
	}
	rc, size, sum, err := src.Fetch(ctx, s.UID)
	if err != nil {
		return fmt.Errorf("fetch shard %s: %w", s.UID, err)
	}
	defer rc.Close()
	if sum == "" {
		return fmt.Errorf("shard %s: the source sent no checksum to verify: %w", s.UID, ErrChecksum)
	}
	s.Size = size
	return b.write(ctx, s, rc, sum, b.limiter, commit)
}

// write streams r into a temp file, fsyncs it, checks it, and renames it
// into place together with fresh metadata (through commit, if not nil).
func (b *FileBackend) write(ctx context.Context, s Spec, r io.Reader, wantSum string, lim *Limiter, commit Commit) error {
	lock := b.writing.get(s.UID)
	lock.Lock()
	defer lock.Unlock()
	f, err := os.CreateTemp(b.dir, s.UID+".data.*.tmp")
	if err != nil {
		return fmt.Errorf("create temp file for shard %s: %w", s.UID, err)
	}
	tmp := f.Name()
	cleanup := func() { f.Close(); os.Remove(tmp) }
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 64<<10)
	n, err := copyCtx(ctx, w, r, lim)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		cleanup()
		return fmt.Errorf("write shard %s: %w", s.UID, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if n != s.Size || (wantSum != "" && sum != wantSum) {
		cleanup()
		return fmt.Errorf("shard %s: got %d bytes with sha256 %s, want %d bytes %s: %w", s.UID, n, sum, s.Size, wantSum, ErrChecksum)
	}
	if err := f.Sync(); err != nil {
		cleanup()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	install := func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		// A replaced copy loses its persistence file: it belongs to old data.
		_ = os.Remove(b.path(s.UID, ".rdb"))
		_ = os.Remove(b.path(s.UID, ".aof"))
		if err := os.Rename(tmp, b.path(s.UID, ".data")); err != nil {
			return fmt.Errorf("install shard %s: %w", s.UID, err)
		}
		return b.saveMeta(meta{Info{UID: s.UID, BDB: s.BDB, Role: s.Role, Size: n, Checksum: sum, InSync: true}})
	}
	if commit == nil {
		err = install()
	} else {
		err = commit(install)
	}
	if err != nil {
		// Gone already if the rename happened.
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// copyCtx copies in chunks, honouring ctx and the limiter between chunks.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader, lim *Limiter) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := r.Read(buf)
		if n > 0 {
			if err := lim.WaitN(ctx, n); err != nil {
				return total, err
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (b *FileBackend) saveMeta(m meta) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode shard metadata: %w", err)
	}
	p := b.path(m.UID, ".meta")
	if err := os.WriteFile(p+".tmp", data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("install %s: %w", p, err)
	}
	// The role record says what the metadata just written says. It is
	// written now, with the shard, rather than removed: a first failover
	// that had to create it waited a millisecond for the directory, as
	// long as the step's commit, where an overwrite takes microseconds.
	if _, ok := roleRecords[m.Role]; ok {
		return b.saveRole(m.UID, m.Role)
	}
	if err := os.Remove(b.path(m.UID, ".role")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("install %s: %w", p, err)
	}
	return nil
}

// roleRecords are the contents of a .role file: one length, so that a
// switch overwrites the file in place with one small write. A failover
// switches two roles before its commit, and creating and renaming a file
// (as saveMeta does) took about a millisecond each under the raft log's
// fsyncs on the same disk: as long as the commit.
var roleRecords = map[string]string{fsm.RoleMaster: "master\n", fsm.RoleSlave: "slave \n"}

func (b *FileBackend) saveRole(uid, role string) error {
	rec, ok := roleRecords[role]
	if !ok {
		return fmt.Errorf("%w: shard %s: unknown role %q", errBadRequest, uid, role)
	}
	p := b.path(uid, ".role")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	_, err = f.WriteAt([]byte(rec), 0)
	if fi, serr := f.Stat(); err == nil && serr == nil && fi.Size() != int64(len(rec)) {
		err = f.Truncate(int64(len(rec))) // longer, from a write gone wrong
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// loadRole is the role the shard's role record holds, if it holds a whole one.
func (b *FileBackend) loadRole(uid string) (string, bool, error) {
	data, err := os.ReadFile(b.path(uid, ".role"))
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read shard %s role: %w", uid, err)
	}
	for role, rec := range roleRecords {
		if string(data) == rec {
			return role, true, nil
		}
	}
	// Not a whole record (a write cut short): the metadata's role stands,
	// and a reconcile switches the shard to the state's, which rewrites it.
	return "", false, nil
}

func (b *FileBackend) loadMeta(uid string) (meta, error) {
	var m meta
	if err := validUID(uid); err != nil {
		return m, err
	}
	if err := readRecord(b.path(uid, ".meta"), uid, &m); err != nil {
		return m, err
	}
	switch role, ok, err := b.loadRole(uid); {
	case err != nil:
		return m, err
	case ok:
		m.Role = role
	}
	if _, err := os.Stat(b.path(uid, ".data")); err != nil {
		return m, fmt.Errorf("shard %s data: %w", uid, ErrNoShard)
	}
	return m, nil
}

// Info reports the local copy.
func (b *FileBackend) Info(uid string) (Info, error) {
	m, err := b.loadMeta(uid)
	if err != nil {
		return Info{}, err
	}
	for _, ext := range []string{".rdb", ".aof"} {
		if _, err := os.Stat(b.path(uid, ext)); err == nil {
			m.Persisted = true
		}
	}
	return m.Info, nil
}

// Open streams the local copy.
func (b *FileBackend) Open(uid string) (io.ReadCloser, Info, error) {
	info, err := b.Info(uid)
	if err != nil {
		return nil, Info{}, err
	}
	f, err := os.Open(b.path(uid, ".data"))
	if err != nil {
		return nil, Info{}, fmt.Errorf("open shard %s: %w", uid, err)
	}
	return f, info, nil
}

// SwitchRole records the shard's new role.
func (b *FileBackend) SwitchRole(_ context.Context, uid, role string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, err := b.loadMeta(uid)
	if err != nil {
		return err
	}
	if m.Role == role {
		return nil
	}
	return b.saveRole(uid, role)
}

// Persist writes the persistence file of the shard: a header naming the
// data's checksum, fsync'd, so that it can be checked against the data.
func (b *FileBackend) Persist(_ context.Context, uid, mode string) error {
	var ext string
	switch mode {
	case "snapshot":
		ext = ".rdb"
	case "aof":
		ext = ".aof"
	default:
		return fmt.Errorf("persist shard %s as %q: %w", uid, mode, ErrBadPersistence)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m, err := b.loadMeta(uid)
	if err != nil {
		return err
	}
	p := b.path(uid, ext)
	f, err := os.CreateTemp(b.dir, uid+ext+".*.tmp")
	if err != nil {
		return fmt.Errorf("create temp file for %s: %w", p, err)
	}
	fail := func(what string, err error) error {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("%s %s: %w", what, p, err)
	}
	if _, err := fmt.Fprintf(f, "cnm %s shard=%s size=%d sha256=%s\n", mode, uid, m.Size, m.Checksum); err != nil {
		return fail("write", err)
	}
	if err := f.Sync(); err != nil {
		return fail("sync", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("close %s: %w", p, err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("install %s: %w", p, err)
	}
	return nil
}

// Drop deletes the shard's files; dropping a missing shard is not an error.
func (b *FileBackend) Drop(_ context.Context, uid string) error {
	if err := validUID(uid); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ext := range []string{".meta", ".role", ".data", ".rdb", ".aof"} {
		if err := os.Remove(b.path(uid, ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("drop shard %s: %w", uid, err)
		}
	}
	return nil
}

// List returns every shard with metadata in the directory.
func (b *FileBackend) List() ([]string, error) {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, fmt.Errorf("list shards: %w", err)
	}
	var out []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".meta"); ok {
			out = append(out, name)
		}
	}
	return out, nil
}
