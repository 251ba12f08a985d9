package main

// The shard processes of the redis backend, as the machine shows them:
// each shard is a redis-server started detached by its node's cnmd in
// <data-dir>/shards/<uid>/, whose shard.json records its pid and port. They
// outlive cnmd, so the drill finds them there to strike them, to check
// that a restarted cnmd adopts them, and to stop every one of them when it
// ends.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// shardProc is one shard directory of a node and the process it records.
type shardProc struct {
	uid  string
	dir  string
	ino  uint64 // the directory's inode: a shard dropped and made again has another
	bdb  int
	role string
	port int
	pid  int
}

// shardProcs reads the shard records of a node's data dir. A record being
// rewritten (or a dir being made) is skipped.
func shardProcs(dataDir string) []shardProc {
	root := filepath.Join(dataDir, "shards")
	entries, _ := os.ReadDir(root)
	var out []shardProc
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if p, ok := readShardProc(dir); ok {
			out = append(out, p)
		}
	}
	return out
}

func readShardProc(dir string) (shardProc, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "shard.json"))
	if err != nil {
		return shardProc{}, false
	}
	var m struct {
		UID  string `json:"uid"`
		BDB  int    `json:"bdb_uid"`
		Role string `json:"role"`
		Port int    `json:"port"`
		PID  int    `json:"pid"`
	}
	if json.Unmarshal(b, &m) != nil {
		return shardProc{}, false
	}
	return shardProc{uid: m.UID, dir: dir, ino: inode(dir), bdb: m.BDB, role: m.Role, port: m.Port, pid: m.PID}, true
}

func inode(path string) uint64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// isRedisServer reports whether pid is a live redis-server: its command
// line says so (a zombie's is empty, a recycled pid's another program's).
func isRedisServer(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(b, []byte("redis-server"))
}

// procState is the state letter of /proc/PID/stat ("" when there is no
// such process), and its parent and command name.
func procState(pid int) (state string, ppid int, comm string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, ""
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return "", 0, ""
	}
	f := strings.Fields(string(b[closing+1:]))
	if len(f) < 2 {
		return "", 0, ""
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0], ppid, string(b[open+1 : closing])
}

// gone reports whether pid no longer runs (absent, or a zombie).
func gone(pid int) bool {
	st, _, _ := procState(pid)
	return st == "" || st == "Z" || st == "X"
}

// serves reports whether a shard answers PING where its record says.
func serves(host string, port int) error {
	reply, err := ask(host, port, "PING")
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(reply, []byte("+PONG")) {
		return fmt.Errorf("PING answered %q", bytes.TrimSpace(reply))
	}
	return nil
}

// ask sends one inline command to the process at host:port and returns
// the start of its reply (what one read brings, up to 4 KiB).
func ask(host string, port int, cmd string) ([]byte, error) {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// becomeSubreaper makes the drill the reaper of its descendants' orphans,
// as init is on a real machine: a redis-server whose cnmd died is
// reparented to the drill, and reapZombies collects it once it dies. (On
// some machines pid 1 reaps nothing; a dead shard process would stay a
// zombie for good, which kill(pid, 0) counts as alive.)
func becomeSubreaper() error {
	const prSetChildSubreaper = 36
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return e
	}
	return nil
}

// reapZombies collects the dead redis-servers reparented to the drill.
// Only those: cnmd processes are waited for by their exec.Cmd.
func reapZombies() {
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ppid, comm := procState(pid); st == "Z" && ppid == self && comm == "redis-server" {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
	}
}

// reaper runs reapZombies until stop is closed.
func reaper(stop <-chan struct{}) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		reapZombies()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// strayRedis lists the live redis-servers that belong to the drill: those
// whose pid a shard directory under one of dirs records (shard.json or
// redis.pid), and those whose working directory is inside root (a shard
// runs in its directory, also one removed or moved aside since).
func strayRedis(dirs []string, root string) []int {
	var pids []int
	add := func(pid int) {
		if isRedisServer(pid) && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	for _, d := range dirs {
		for _, p := range shardProcs(d) {
			add(p.pid)
		}
		files, _ := filepath.Glob(filepath.Join(d, "shards", "*", "redis.pid"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			add(pid)
		}
	}
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil {
			continue
		}
		cwd = strings.TrimSuffix(cwd, " (deleted)")
		if cwd == root || strings.HasPrefix(cwd, root+string(filepath.Separator)) {
			add(pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// killRedis SIGKILLs the given redis-servers (each checked again just
// before) and waits up to 10 s until they are gone and reaped.
func killRedis(pids []int) error {
	for _, pid := range pids {
		if isRedisServer(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		reapZombies()
		var left []int
		for _, pid := range pids {
			// A zombie of another parent is dead: that parent reaps it.
			if st, ppid, _ := procState(pid); st != "" && (st != "Z" || ppid == os.Getpid()) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server processes %v still there 10 s after SIGKILL", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dataDirs is every node's data dir.
func (c *cluster) dataDirs() []string {
	var dirs []string
	for _, n := range c.nodes {
		dirs = append(dirs, n.dir)
	}
	return dirs
}

// stopShards kills every redis-server the drill's nodes left running: they
// outlive cnmd by design, so stopping the nodes stops none of them.
func (c *cluster) stopShards() error {
	pids := strayRedis(c.dataDirs(), c.dir)
	if len(pids) == 0 {
		return nil
	}
	fmt.Printf("drill: stopping %d shard processes\n", len(pids))
	if err := killRedis(pids); err != nil {
		return err
	}
	if left := strayRedis(c.dataDirs(), c.dir); len(left) > 0 {
		return fmt.Errorf("redis-server processes %v remain after the cleanup", left)
	}
	return nil
}

// errNeedsRedis: a nemesis of shard processes on file shards, which have
// none.
var errNeedsRedis = fmt.Errorf("needs -backend redis (file shards run no process): %w", errSkipped)

// killCnmdOnly SIGKILLs one node's cnmd and only it: its shard processes
// must go on serving, and the restarted cnmd must adopt them, not start
// them again.
func (f *fault) killCnmdOnly() error {
	c := f.c
	if c.backend != backendRedis {
		return errNeedsRedis
	}
	victim := f.randomNode()
	var before []shardProc
	for _, p := range shardProcs(victim.dir) {
		if isRedisServer(p.pid) && serves(victim.host, p.port) == nil {
			before = append(before, p)
		}
	}
	c.kill(victim, false)
	var errs []error
	for _, p := range before {
		if !isRedisServer(p.pid) {
			errs = append(errs, fmt.Errorf("shard %s's process %d died with node %d's cnmd", p.uid, p.pid, victim.uid))
		} else if err := serves(victim.host, p.port); err != nil {
			errs = append(errs, fmt.Errorf("shard %s's process %d serves no more with node %d's cnmd dead: %v", p.uid, p.pid, victim.uid, err))
		}
	}
	if _, err := c.leader(f.ctx, 10*time.Second); err != nil {
		errs = append(errs, fmt.Errorf("no leader among the survivors of node %d: %w", victim.uid, err))
	}
	f.pause(time.Second)
	if err := c.start(victim); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if err := c.waitUp(f.ctx, victim); err != nil {
		return errors.Join(append(errs, err)...)
	}
	// Back: its agent supervises the shards at once (every second) and
	// reconciles once caught up. For 4 s every shard still in its
	// directory must keep its process. One dropped or made anew since (a
	// move of the workload's actions) is no longer the same shard; a drop
	// stops the process before it removes the directory, so a process
	// gone from a directory still there is only a violation once another
	// has started in it.
	fmt.Printf("drill:   node %d's cnmd killed and back; %d shard processes to be adopted\n", victim.uid, len(before))
	watch := time.Now().Add(4 * time.Second)
	for {
		for _, p := range before {
			if err := adopted(victim, p); err != nil {
				return errors.Join(append(errs, err)...)
			}
		}
		if !time.Now().Before(watch) {
			break
		}
		select {
		case <-f.ctx.Done():
			return f.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	// A process that died in the window must have been a drop: its
	// directory goes.
	for _, p := range before {
		if isRedisServer(p.pid) {
			continue
		}
		err := poll(f.ctx, superviseBound, func() error {
			if now, ok := readShardProc(p.dir); ok && now.ino == p.ino {
				if err := adopted(victim, p); err != nil {
					return err
				}
				return fmt.Errorf("node %d: shard %s's process %d is gone but its directory stays", victim.uid, p.uid, p.pid)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// adopted checks that a shard directory recorded before its cnmd was
// killed, if it is still the same, still records the same process.
func adopted(n *proc, p shardProc) error {
	now, ok := readShardProc(p.dir)
	if !ok || now.ino != p.ino || now.pid == p.pid {
		return nil
	}
	return fmt.Errorf("node %d's restarted cnmd did not adopt shard %s: process %d (alive: %v) replaced by %d",
		n.uid, p.uid, p.pid, isRedisServer(p.pid), now.pid)
}

// superviseBound is how long a killed shard process may stay down: its
// agent checks every second and restarts it from its directory.
const superviseBound = 10 * time.Second

// killRedisServer SIGKILLs one shard process of a replicated database,
// master or replica: its node's agent must start it again, within
// superviseBound. (A non-replicated shard killed loses the writes since
// its last persistence by design; the drill strikes only replicated ones.)
func (f *fault) killRedisServer() error {
	c := f.c
	if c.backend != backendRedis {
		return errNeedsRedis
	}
	replicated := map[int]bool{}
	for _, d := range c.dbs {
		if d.spec.replication {
			replicated[d.uid] = true
		}
	}
	byRole := map[string][]struct {
		n *proc
		p shardProc
	}{}
	for _, n := range c.running() {
		for _, p := range shardProcs(n.dir) {
			if replicated[p.bdb] && isRedisServer(p.pid) {
				byRole[p.role] = append(byRole[p.role], struct {
					n *proc
					p shardProc
				}{n, p})
			}
		}
	}
	role := "master"
	if f.rng.IntN(2) == 0 {
		role = "replica"
	}
	if len(byRole[role]) == 0 {
		role = map[string]string{"master": "replica", "replica": "master"}[role]
	}
	cands := byRole[role]
	if len(cands) == 0 {
		return fmt.Errorf("no running shard process of a replicated database found in the nodes' shard dirs")
	}
	v := cands[f.rng.IntN(len(cands))]
	if !isRedisServer(v.p.pid) {
		return fmt.Errorf("shard %s's recorded pid %d is no redis-server", v.p.uid, v.p.pid)
	}
	if err := syscall.Kill(v.p.pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill shard %s's process %d: %w", v.p.uid, v.p.pid, err)
	}
	killed := time.Now()
	fmt.Printf("drill:   killed %s shard %s of db %d on node %d (pid %d)\n", v.p.role, v.p.uid, v.p.bdb, v.n.uid, v.p.pid)
	f.c.note(fmt.Sprintf("kill-redis-server: %s shard %s of db %d on node %d", v.p.role, v.p.uid, v.p.bdb, v.n.uid))
	if err := poll(f.ctx, 5*time.Second, func() error {
		if !gone(v.p.pid) {
			return fmt.Errorf("shard %s's process %d still runs after SIGKILL", v.p.uid, v.p.pid)
		}
		return nil
	}); err != nil {
		return err
	}
	var back shardProc
	err := poll(f.ctx, superviseBound, func() error {
		now, ok := readShardProc(v.p.dir)
		if !ok || now.ino != v.p.ino {
			back = shardProc{} // dropped (moved away) meanwhile
			return nil
		}
		if now.pid == v.p.pid || !isRedisServer(now.pid) {
			return fmt.Errorf("shard %s on node %d was not restarted within %s of its process's kill", v.p.uid, v.n.uid, superviseBound)
		}
		if err := serves(v.n.host, now.port); err != nil {
			return fmt.Errorf("shard %s on node %d restarted (pid %d) but does not serve within %s: %v", v.p.uid, v.n.uid, now.pid, superviseBound, err)
		}
		back = now
		return nil
	})
	if err != nil {
		return err
	}
	if back.pid == 0 {
		fmt.Printf("drill:   shard %s was dropped from node %d meanwhile (moved)\n", v.p.uid, v.n.uid)
		return nil
	}
	fmt.Printf("drill:   shard %s back as pid %d after %s\n", v.p.uid, back.pid, time.Since(killed).Round(time.Millisecond))
	if v.p.role != "master" {
		return nil
	}
	// A killed master comes back as a replica of its replica and copies
	// everything back before it takes its role again: the nemesis lasts
	// until then, so that the write gap of its recovery is its own, not
	// that of the actions after it. Another action may switch the pair
	// meanwhile: a master that does not lead again within the bound is
	// only reported.
	if err := poll(f.ctx, recoverBound, func() error { return leads(v.n.host, back.port) }); err != nil {
		fmt.Printf("drill:   shard %s did not lead again within %s: %v\n", v.p.uid, recoverBound, err)
		return nil
	}
	fmt.Printf("drill:   shard %s leads again after %s\n", v.p.uid, time.Since(killed).Round(time.Millisecond))
	return nil
}

// recoverBound is how long a killed master's recovery is waited for.
const recoverBound = 30 * time.Second

// leads is nil once the process at host:port answers INFO replication as a
// master.
func leads(host string, port int) error {
	reply, err := ask(host, port, "INFO replication")
	if err != nil {
		return err
	}
	if !bytes.Contains(reply, []byte("role:master")) {
		return errors.New("it answers as a replica")
	}
	return nil
}
