package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// pollEvery is how often the backend polls a process or a replication
// state it waits for.
const pollEvery = 20 * time.Millisecond

// startTimeout bounds how long a new process may take to answer PING.
const startTimeout = 15 * time.Second

// errExited: the process ended before it answered.
var errExited = errors.New("redis-server exited")

// dial returns a client of the process at addr; a client per use keeps no
// connection to a process that may be gone by the next call.
func dial(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		ContextTimeoutEnabled:    true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// startOnFreePort starts the shard on the first port of the range that no
// local shard records and that is free; a port taken meanwhile by another
// program makes it try the next.
func (b *RedisBackend) startOnFreePort(ctx context.Context, m *shardMeta) error {
	b.portMu.Lock()
	defer b.portMu.Unlock()
	used := b.usedPorts()
	var errs []error
	for port := b.cfg.PortLow; port <= b.cfg.PortHigh && len(errs) < 5; port++ {
		if used[port] || !b.portFree(port) {
			continue
		}
		m.Port = port
		err := b.start(ctx, m)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errExited) {
			return err
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return fmt.Errorf("start shard %s: no free port in %d-%d", m.UID, b.cfg.PortLow, b.cfg.PortHigh)
	}
	return fmt.Errorf("start shard %s: %w", m.UID, errors.Join(errs...))
}

func (b *RedisBackend) usedPorts() map[int]bool {
	used := map[int]bool{}
	uids, _ := b.List()
	for _, uid := range uids {
		if m, err := b.loadMeta(uid); err == nil {
			used[m.Port] = true
		}
	}
	return used
}

func (b *RedisBackend) portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(b.cfg.Host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// start runs the shard's process detached from cnmd (a session of its
// own, output to a log file in its directory), so that neither a signal
// to cnmd's process group nor cnmd's death stops it, records its pid and
// waits until it answers.
func (b *RedisBackend) start(ctx context.Context, m *shardMeta) error {
	dir := b.shardDir(m.UID)
	if err := b.writeConf(*m); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, pidFile))
	logf, err := os.OpenFile(filepath.Join(dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open shard %s log: %w", m.UID, err)
	}
	closeInheritedOnExec()
	cmd := exec.Command(b.cfg.Server, filepath.Join(dir, confFile))
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fmt.Errorf("start shard %s: %w", m.UID, err)
	}
	// Reaped here while cnmd lives: a dead child left unreaped would look
	// alive to kill(pid, 0).
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.PID = cmd.Process.Pid
	if err := b.saveMeta(*m); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	if err := b.waitUp(ctx, *m, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("shard %s on port %d: %w", m.UID, m.Port, err)
	}
	return nil
}

// waitUp polls until the process answers PING as itself.
func (b *RedisBackend) waitUp(ctx context.Context, m shardMeta, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		if b.answers(ctx, m) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%w: %s", errExited, b.logTail(m.UID))
		case <-ctx.Done():
			return fmt.Errorf("waiting for redis-server to answer: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// logTail is the end of the shard's log, to say why a process failed.
func (b *RedisBackend) logTail(uid string) string {
	data, _ := os.ReadFile(filepath.Join(b.shardDir(uid), logFile))
	data = bytes.TrimSpace(data)
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[i+1:]
	}
	return string(data)
}

// answers reports whether the shard's recorded process serves on its
// port: a process that answers there but has another pid is not it (a
// port reused by another program, or a stale record).
func (b *RedisBackend) answers(ctx context.Context, m shardMeta) bool {
	if m.PID <= 0 || m.Port <= 0 || !pidAlive(m.PID) {
		return false
	}
	c := dial(b.addr(m))
	defer c.Close()
	s, err := c.Info(ctx, "server").Result()
	if err != nil {
		return false
	}
	return infoMap(s)["process_id"] == strconv.Itoa(m.PID)
}

func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ensureRunning adopts the shard's process if it still runs, and
// otherwise starts it again from its directory on its recorded port (or,
// if that is taken, another). The shard's lock is held.
func (b *RedisBackend) ensureRunning(ctx context.Context, m *shardMeta) error {
	if pid := readPID(b.shardDir(m.UID)); pid > 0 && pid != m.PID {
		m.PID = pid // the pidfile of a process started by an older record
	}
	if b.answers(ctx, *m) {
		if m.Recovering == "" {
			return nil
		}
		// The shard serves on as a replica while it copies; what needs
		// it as a master (SwitchRole) asks for finishRecovery itself.
		if err := b.finishRecovery(ctx, m); err != nil && !errors.Is(err, errRecovering) {
			b.log.Warn("master shard recovery", "shard_uid", m.UID, "error", err)
		}
		return nil
	}
	if err := ctx.Err(); err != nil {
		// Not an answer about the process: it was not asked.
		return fmt.Errorf("shard %s: %w", m.UID, err)
	}
	if m.PID > 0 && pidAlive(m.PID) && b.isOurs(m) {
		// Alive but not answering (loading, stopped, busy): restarting it
		// would lose what it holds, and two processes must never share
		// its files.
		return fmt.Errorf("shard %s: process %d runs but does not answer on port %d", m.UID, m.PID, m.Port)
	}
	return b.restart(ctx, m)
}

// isOurs tells whether pid is a redis-server run from this shard's
// configuration, so that a recycled pid of another program is never
// killed.
func (b *RedisBackend) isOurs(m *shardMeta) bool {
	if m.Port <= 0 {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", m.PID))
	if err != nil {
		return false
	}
	return strings.Contains(string(cmdline), "redis-server") &&
		strings.Contains(string(cmdline), ":"+strconv.Itoa(m.Port))
}

func readPID(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// stop shuts the process down without saving and waits until it is gone;
// one that does not go is killed.
func (b *RedisBackend) stop(ctx context.Context, m shardMeta) error {
	if !b.answers(ctx, m) {
		if m.PID > 0 && pidAlive(m.PID) && b.isOurs(&m) {
			_ = syscall.Kill(-m.PID, syscall.SIGKILL)
		}
		b.waitGone(ctx, m.PID)
		return nil
	}
	c := dial(b.addr(m))
	// NOW: a master does not wait for its replicas, which are going too
	// or follow another master by now. The answer is the closed link.
	_ = c.Do(ctx, "SHUTDOWN", "NOSAVE", "NOW").Err()
	c.Close()
	if !b.waitGone(ctx, m.PID) {
		_ = syscall.Kill(-m.PID, syscall.SIGKILL)
		if !b.waitGone(ctx, m.PID) {
			return fmt.Errorf("shard %s: process %d does not exit", m.UID, m.PID)
		}
	}
	return nil
}

// waitGone polls until pid no longer exists, for at most 10 s.
func (b *RedisBackend) waitGone(ctx context.Context, pid int) bool {
	if pid <= 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for pidAlive(pid) {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// Supervise restarts, every SuperviseEvery until ctx ends, the shard
// processes that died; a shard busy with another operation is looked at
// next time.
func (b *RedisBackend) Supervise(ctx context.Context) {
	t := time.NewTicker(b.cfg.SuperviseEvery)
	defer t.Stop()
	for {
		b.SuperviseOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SuperviseOnce is one round of Supervise: every shard whose process is
// gone is started again from its directory.
func (b *RedisBackend) SuperviseOnce(ctx context.Context) {
	uids, err := b.List()
	if err != nil {
		b.log.Warn("supervise", "error", err)
		return
	}
	for _, uid := range uids {
		unlock, ok := b.locks.tryLock(uid)
		if !ok {
			continue
		}
		m, err := b.loadMeta(uid)
		if err == nil {
			err = b.ensureRunning(ctx, &m)
		}
		unlock()
		if err != nil && ctx.Err() == nil && !errors.Is(err, ErrNoShard) {
			b.log.Warn("supervise shard", "shard_uid", uid, "error", err)
		}
	}
}

// closeInheritedOnExec marks every descriptor this process holds beyond
// stdin, stdout and stderr close-on-exec. Go opens its own so, but not
// those cnmd inherited from whatever started it, which every child would
// inherit in turn: a shard process outlives cnmd, and one holding the
// write end of a supervisor's pipe, or its lock, would hold it for as long
// as it runs.
func closeInheritedOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
