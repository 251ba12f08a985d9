package cluster

import "cnm/fsm"

// Params of the actions (SPEC §4); pointers tell "absent" from "false".
// The actions tag lists the actions whose request body takes the field.
type Params struct {
	WaitForPersistence       *bool    `json:"wait_for_persistence,omitempty" actions:"remove"`
	OverwriteSnapshot        *bool    `json:"overwrite_snapshot,omitempty" actions:"maintenance_on"`
	EvictHAReplica           *bool    `json:"evict_ha_replica,omitempty" actions:"maintenance_on"`
	EvictActiveActiveReplica *bool    `json:"evict_active_active_replica,omitempty" actions:"maintenance_on"`
	EvictDBs                 []string `json:"evict_dbs,omitempty" actions:"maintenance_on"`
	KeepSlaveShards          *bool    `json:"keep_slave_shards,omitempty" actions:"maintenance_on"`
	SnapshotName             *string  `json:"snapshot_name,omitempty" actions:"maintenance_off"`
	SkipShardsRestore        *bool    `json:"skip_shards_restore,omitempty" actions:"maintenance_off"`
	ShardsOnly               *bool    `json:"shards_only,omitempty" actions:"enslave_node"`
	EndpointsOnly            *bool    `json:"endpoints_only,omitempty" actions:"enslave_node"`
	DeadlineSeconds          *int     `json:"deadline_seconds,omitempty" actions:"remove,maintenance_on,maintenance_off,enslave_node"`
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
