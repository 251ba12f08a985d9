package cluster

import "cnm/fsm"

// Params of the actions (SPEC §4); pointers tell "absent" from "false".
type Params struct {
	WaitForPersistence       *bool    `json:"wait_for_persistence,omitempty"`
	OverwriteSnapshot        *bool    `json:"overwrite_snapshot,omitempty"`
	EvictHAReplica           *bool    `json:"evict_ha_replica,omitempty"`
	EvictActiveActiveReplica *bool    `json:"evict_active_active_replica,omitempty"`
	EvictDBs                 []string `json:"evict_dbs,omitempty"`
	KeepSlaveShards          *bool    `json:"keep_slave_shards,omitempty"`
	SnapshotName             *string  `json:"snapshot_name,omitempty"`
	SkipShardsRestore        *bool    `json:"skip_shards_restore,omitempty"`
	ShardsOnly               *bool    `json:"shards_only,omitempty"`
	EndpointsOnly            *bool    `json:"endpoints_only,omitempty"`
	DeadlineSeconds          *int     `json:"deadline_seconds,omitempty"`
}

// Resolved returns p with every unset flag of action set to the default
// it would have, so that the stored action says what it does (SPEC §3.1).
// remove's wait_for_persistence defaults to the policy's
// persistent_node_removal at submission.
func (p Params) Resolved(action string, policy fsm.Policy) Params {
	set := func(f **bool, def bool) {
		if *f == nil {
			v := def
			*f = &v
		}
	}
	switch action {
	case fsm.ActionRemove:
		set(&p.WaitForPersistence, policy.PersistentNodeRemoval)
	case fsm.ActionMaintenanceOn:
		set(&p.OverwriteSnapshot, false)
		set(&p.EvictHAReplica, true)
		set(&p.EvictActiveActiveReplica, true)
		set(&p.KeepSlaveShards, false)
	case fsm.ActionMaintenanceOff:
		set(&p.SkipShardsRestore, false)
	case fsm.ActionEnslaveNode:
		set(&p.ShardsOnly, false)
		set(&p.EndpointsOnly, false)
	}
	return p
}

func flag(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}
