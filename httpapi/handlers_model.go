package httpapi

import (
	"net/http"
	"runtime"
	"strconv"
	"time"
	"unicode/utf8"

	"cnm/fsm"
)

// shardView is a shard as the API shows it: uids of shards and their nodes
// are strings (SPEC §5).
type shardView struct {
	UID           string `json:"uid"`
	BDBUID        int    `json:"bdb_uid"`
	NodeUID       string `json:"node_uid"`
	Role          string `json:"role"`
	Status        string `json:"status"`
	Memory        int64  `json:"memory"`
	AssignedSlots string `json:"assigned_slots"`
	// What the shard's process last reported (0 with the file backend).
	UsedMemory int64 `json:"used_memory"`
	Keys       int64 `json:"keys"`
}

func viewShard(sh *fsm.Shard) shardView {
	return shardView{UID: sh.UID, BDBUID: sh.BDBUID, NodeUID: strconv.Itoa(sh.NodeUID), Role: sh.Role,
		Status: sh.Status, Memory: sh.Memory, AssignedSlots: sh.AssignedSlots, UsedMemory: sh.UsedMemory, Keys: sh.Keys}
}

type endpointView struct {
	UID     string   `json:"uid"`
	NodeUID string   `json:"node_uid"`
	Addr    []string `json:"addr"`
	Port    int      `json:"port"`
}

type bdbView struct {
	UID             int            `json:"uid"`
	Name            string         `json:"name"`
	MemorySize      int64          `json:"memory_size"`
	ShardsCount     int            `json:"shards_count"`
	Replication     bool           `json:"replication"`
	CRDT            bool           `json:"crdt"`
	DataPersistence string         `json:"data_persistence"`
	ShardList       []int          `json:"shard_list"`
	Endpoints       []endpointView `json:"endpoints"`
	Status          string         `json:"status"`
}

func viewBDB(st *fsm.State, b *fsm.BDB) bdbView {
	v := bdbView{UID: b.UID, Name: b.Name, MemorySize: b.MemorySize, ShardsCount: b.ShardsCount,
		Replication: b.Replication, CRDT: b.CRDT, DataPersistence: b.DataPersistence, Status: b.Status,
		ShardList: []int{}, Endpoints: []endpointView{}}
	for _, sh := range st.ShardsOf(b.UID) {
		v.ShardList = append(v.ShardList, shardInts([]string{sh.UID})...)
	}
	for _, e := range b.Endpoints {
		ev := endpointView{UID: e.UID, NodeUID: strconv.Itoa(e.NodeUID), Port: e.Port, Addr: []string{}}
		if n, ok := st.Nodes[e.NodeUID]; ok {
			ev.Addr = append(ev.Addr, n.Addr)
		}
		v.Endpoints = append(v.Endpoints, ev)
	}
	return v
}

func (s *Server) listBDBs(w http.ResponseWriter, _ *http.Request, _ principal) error {
	out := []bdbView{}
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		for _, uid := range st.BDBUIDs() {
			out = append(out, viewBDB(st, st.BDBs[uid]))
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func errBDBNotFound(uid int) *fsm.Error {
	return fsm.ErrBDBNotFound.With("database " + itoa(uid) + " does not exist")
}

func (s *Server) getBDB(w http.ResponseWriter, r *http.Request, _ principal) error {
	return s.showOne(w, r, "database", func(st *fsm.State, uid int) (any, error) {
		b, ok := st.BDBs[uid]
		if !ok {
			return nil, errBDBNotFound(uid)
		}
		return viewBDB(st, b), nil
	})
}

type bdbBody struct {
	Name            *string `json:"name"`
	MemorySize      *int64  `json:"memory_size"`
	ShardsCount     *int    `json:"shards_count"`
	Replication     *bool   `json:"replication"`
	CRDT            *bool   `json:"crdt"`
	DataPersistence *string `json:"data_persistence"`
}

func (b *bdbBody) toBDB() (fsm.BDB, error) {
	out := fsm.BDB{ShardsCount: 1, DataPersistence: fsm.PersistenceDisabled}
	if b.Name == nil || *b.Name == "" || len(*b.Name) > 63 {
		return out, fsm.ErrInvalidParameter.With("field \"name\" is required (1 to 63 bytes)")
	}
	out.Name = *b.Name
	if b.MemorySize == nil || *b.MemorySize <= 0 || *b.MemorySize > fsm.MaxMemorySize {
		return out, fsm.ErrInvalidParameter.With("field \"memory_size\" is required: a positive number of bytes, at most 1 PiB")
	}
	out.MemorySize = *b.MemorySize
	if b.ShardsCount != nil {
		if *b.ShardsCount < 1 || *b.ShardsCount > 512 {
			return out, fsm.ErrInvalidParameter.With("field \"shards_count\" must be 1 to 512, got " + itoa(*b.ShardsCount))
		}
		out.ShardsCount = *b.ShardsCount
	}
	if out.MemorySize < int64(out.ShardsCount) {
		return out, fsm.ErrInvalidParameter.With("field \"memory_size\" must give every shard at least one byte")
	}
	if b.Replication != nil {
		out.Replication = *b.Replication
	}
	if b.CRDT != nil {
		out.CRDT = *b.CRDT
	}
	if b.DataPersistence != nil {
		switch p := *b.DataPersistence; p {
		case fsm.PersistenceDisabled, fsm.PersistenceSnapshot, fsm.PersistenceAOF:
			out.DataPersistence = p
		default:
			return out, fsm.ErrInvalidParameter.With("field \"data_persistence\" must be disabled, snapshot or aof, got " + quote(p))
		}
	}
	return out, nil
}

func (s *Server) createBDB(w http.ResponseWriter, r *http.Request, p principal) error {
	var body bdbBody
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	b, err := body.toBDB()
	if err != nil {
		return err
	}
	created, err := s.ctl.CreateBDB(r.Context(), p.actor(), b)
	if err != nil {
		return err
	}
	var v bdbView
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		if cur, ok := st.BDBs[created.UID]; ok {
			v = viewBDB(st, cur)
		} else {
			v = viewBDB(st, created)
		}
	})
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) deleteBDB(w http.ResponseWriter, r *http.Request, p principal) error {
	return deleteOne(w, r, "database", func(uid int) error { return s.ctl.DeleteBDB(r.Context(), p.actor(), uid) })
}

func (s *Server) listShards(w http.ResponseWriter, _ *http.Request, _ principal) error {
	var recs []*fsm.Shard
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		ids := st.ShardUIDs()
		recs = make([]*fsm.Shard, len(ids))
		for i, id := range ids {
			recs[i] = st.Shards[id]
		}
	})
	parts, err := s.shardJSON.list(recs)
	if err != nil {
		return err
	}
	writeList(w, "", parts, "")
	return nil
}

func (s *Server) getShard(w http.ResponseWriter, r *http.Request, _ principal) error {
	id := muxVar(r, "uid")
	if n, err := strconv.Atoi(id); err != nil || n <= 0 || strconv.Itoa(n) != id {
		return fsm.ErrInvalidParameter.With("shard uid must be a positive integer, got " + quote(id))
	}
	var v shardView
	var ok bool
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		var sh *fsm.Shard
		if sh, ok = st.Shards[id]; ok {
			v = viewShard(sh)
		}
	})
	if !ok {
		return fsm.ErrShardNotFound.With("shard " + id + " does not exist")
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) getPolicy(w http.ResponseWriter, _ *http.Request, _ principal) error {
	var pol fsm.Policy
	s.fsm.Read(func(st *fsm.State, _ uint64) { pol = st.Policy })
	writeJSON(w, http.StatusOK, pol)
	return nil
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	var body struct {
		PersistentNodeRemoval  *bool   `json:"persistent_node_removal"`
		DefaultShardsPlacement *string `json:"default_shards_placement"`
		RackAware              *bool   `json:"rack_aware"`
		ShardsOverbooking      *bool   `json:"shards_overbooking"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.PersistentNodeRemoval == nil && body.DefaultShardsPlacement == nil && body.RackAware == nil && body.ShardsOverbooking == nil {
		return fsm.ErrInvalidParameter.With("nothing to update: give persistent_node_removal, default_shards_placement, rack_aware or shards_overbooking")
	}
	if d := body.DefaultShardsPlacement; d != nil && *d != fsm.PlacementDense && *d != fsm.PlacementSparse {
		return fsm.ErrInvalidParameter.With("field \"default_shards_placement\" must be dense or sparse, got " + quote(*d))
	}
	pol, err := s.ctl.UpdatePolicy(r.Context(), &fsm.UpdatePolicy{Actor: p.actor(), PersistentNodeRemoval: body.PersistentNodeRemoval,
		DefaultShardsPlacement: body.DefaultShardsPlacement, RackAware: body.RackAware, ShardsOverbooking: body.ShardsOverbooking})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, pol)
	return nil
}

// maxRackIDChars bounds a rack id (SPEC §9): it is stored in the replicated
// state and shown in every node view.
const maxRackIDChars = 64

func (s *Server) putNode(w http.ResponseWriter, r *http.Request, p principal) error {
	uid, err := pathUID(r, "node")
	if err != nil {
		return err
	}
	var body struct {
		AcceptServers   *bool   `json:"accept_servers"`
		MaxRedisServers *int    `json:"max_redis_servers"`
		RackID          *string `json:"rack_id"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.AcceptServers == nil && body.MaxRedisServers == nil && body.RackID == nil {
		return fsm.ErrInvalidParameter.With("nothing to update: give accept_servers, max_redis_servers or rack_id")
	}
	if body.MaxRedisServers != nil && *body.MaxRedisServers < 0 {
		return fsm.ErrInvalidParameter.With("field \"max_redis_servers\" must not be negative")
	}
	if body.RackID != nil && utf8.RuneCountInString(*body.RackID) > maxRackIDChars {
		return fsm.ErrInvalidParameter.With("field \"rack_id\" must be at most 64 characters long")
	}
	if err := s.ctl.UpdateNode(r.Context(), &fsm.UpdateNode{Actor: p.actor(), UID: uid, AcceptServers: body.AcceptServers,
		MaxRedisServers: body.MaxRedisServers, RackID: body.RackID}); err != nil {
		return err
	}
	return s.getNode(w, r, p)
}

// nodeStatusView is one node's entry of GET /v1/nodes/status, shaped as
// Redis Enterprise shapes it (SPEC §5.1), with a few fields of our own
// (uid, status, accept_servers, maintenance, removing, shard_count).
type nodeStatusView struct {
	Role                string        `json:"role"`
	NodeStatus          string        `json:"node_status"`
	MasterShards        []int         `json:"master_shards"`
	SlaveShards         []int         `json:"slave_shards"`
	Hostname            string        `json:"hostname"`
	SoftwareVersion     string        `json:"software_version"`
	TotalMemory         int64         `json:"total_memory"`
	Cores               int           `json:"cores"`
	MaintenanceSnapshot *snapshotView `json:"maintenance_snapshot,omitempty"`

	UID           int    `json:"uid"`
	Status        string `json:"status"`
	AcceptServers bool   `json:"accept_servers"`
	Maintenance   bool   `json:"maintenance"`
	Removing      bool   `json:"removing"`
	ShardCount    int    `json:"shard_count"`
}

// snapshotView is a node snapshot as Redis Enterprise shows it.
type snapshotView struct {
	CreatedTime string `json:"created_time"`
	Name        string `json:"name"`
	NodeUID     string `json:"node_uid"`
}

// snapshotListView is an entry of GET /v1/nodes/{uid}/snapshots: the
// snapshot object and, our own addition, what it will restore.
type snapshotListView struct {
	snapshotView
	Shards    []fsm.SnapshotShard `json:"shards"`
	Endpoints []string            `json:"endpoints"`
}

// snapshotTime is the layout of created_time: UTC, without a zone.
const snapshotTime = "2006-01-02 15:04:05"

func viewSnapshot(node int, sn *fsm.NodeSnapshot) snapshotView {
	return snapshotView{CreatedTime: time.Unix(sn.Time, 0).UTC().Format(snapshotTime), Name: sn.Name, NodeUID: itoa(node)}
}

// viewNodeStatus shows node n; leader is the uid of the node that leads
// the cluster (0: none known), which is the one whose role is "master".
func (s *Server) viewNodeStatus(st *fsm.State, n *fsm.Node, leader int) nodeStatusView {
	v := nodeStatusView{Role: "slave", NodeStatus: shownStatus(n), MasterShards: []int{}, SlaveShards: []int{},
		Hostname: n.Addr, SoftwareVersion: n.SoftwareVersion, TotalMemory: n.TotalMemory,
		UID: n.UID, Status: shownStatus(n), AcceptServers: acceptsServers(n),
		Maintenance: n.Maintenance, Removing: n.Removing}
	if n.UID == leader {
		v.Role = "master"
	}
	// Recorded when the node joined; a record from before then has none,
	// and only this node can still say its own.
	v.Cores = n.Cores
	if v.Cores == 0 && n.UID == s.raft.ID() {
		v.Cores = runtime.NumCPU()
	}
	for _, sh := range st.ShardsOn(n.UID) {
		ids := shardInts([]string{sh.UID})
		if sh.Role == fsm.RoleMaster {
			v.MasterShards = append(v.MasterShards, ids...)
		} else {
			v.SlaveShards = append(v.SlaveShards, ids...)
		}
	}
	v.ShardCount = len(v.MasterShards) + len(v.SlaveShards)
	if snaps := st.Snapshots[n.UID]; n.Maintenance && len(snaps) > 0 {
		sv := viewSnapshot(n.UID, snaps[len(snaps)-1])
		v.MaintenanceSnapshot = &sv
	}
	return v
}

func (s *Server) nodesStatus(w http.ResponseWriter, _ *http.Request, _ principal) error {
	out := map[string]nodeStatusView{}
	leader, _ := s.raft.Leader()
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		for _, uid := range st.NodeUIDs() {
			out[itoa(uid)] = s.viewNodeStatus(st, st.Nodes[uid], leader)
		}
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) nodeStatus(w http.ResponseWriter, r *http.Request, _ principal) error {
	uid, err := pathUID(r, "node")
	if err != nil {
		return err
	}
	leader, _ := s.raft.Leader()
	var v nodeStatusView
	var ok bool
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		var n *fsm.Node
		if n, ok = st.Nodes[uid]; ok {
			v = s.viewNodeStatus(st, n, leader)
		}
	})
	if !ok {
		return fsm.NoSuchNode(uid)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request, _ principal) error {
	uid, err := pathUID(r, "node")
	if err != nil {
		return err
	}
	out := []snapshotListView{}
	var ok bool
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		if _, ok = st.Nodes[uid]; ok {
			for _, sn := range st.Snapshots[uid] {
				out = append(out, snapshotListView{snapshotView: viewSnapshot(uid, sn), Shards: sn.Shards, Endpoints: sn.Endpoints})
			}
		}
	})
	if !ok {
		return fsm.NoSuchNode(uid)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request, p principal) error {
	uid, err := pathUID(r, "node")
	if err != nil {
		return err
	}
	name := muxVar(r, "name")
	if err := decodeBody(r, &struct{}{}); err != nil {
		return err
	}
	if err := s.ctl.DeleteSnapshot(r.Context(), p.actor(), uid, name); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"name": name})
	return nil
}
