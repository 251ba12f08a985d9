package httpapi

import (
	"slices"

	"cnm/fsm"
)

// Permission names (SPEC §8).
const (
	PermViewAllNodeActions = "view_status_of_all_node_actions"
	PermViewNodeAction     = "view_status_of_node_action"
	PermViewAllNodesInfo   = "view_all_nodes_info"
	PermViewNodeInfo       = "view_node_info"
	PermViewClusterInfo    = "view_cluster_info"
	PermViewAllBDBsInfo    = "view_all_bdbs_info"
	PermViewBDBInfo        = "view_bdb_info"
	PermViewAllShardStats  = "view_all_shard_stats"
	PermStartNodeAction    = "start_node_action"
	PermCancelNodeAction   = "cancel_node_action"
	PermUpdateNode         = "update_node"
	PermUpdateCluster      = "update_cluster"
	PermCreateBDB          = "create_bdb"
	PermUpdateBDB          = "update_bdb"
	PermDeleteBDB          = "delete_bdb"
	PermViewAllUsersInfo   = "view_all_users_info"
	PermCreateNewUser      = "create_new_user"
	PermUpdateUser         = "update_user"
	PermDeleteUser         = "delete_user"
	permAuthenticated      = "" // any authenticated user, whatever the role
)

var (
	allButNone  = []string{fsm.RoleAdmin, fsm.RoleClusterMember, fsm.RoleClusterViewer, fsm.RoleDBMember, fsm.RoleDBViewer, fsm.RoleUserManager}
	adminOnly   = []string{fsm.RoleAdmin}
	dbWriters   = []string{fsm.RoleAdmin, fsm.RoleClusterMember, fsm.RoleDBMember}
	userManager = []string{fsm.RoleAdmin, fsm.RoleUserManager}
)

// permissionRoles is the table of SPEC §8: which roles hold each permission.
var permissionRoles = map[string][]string{
	PermViewAllNodeActions: allButNone,
	PermViewNodeAction:     allButNone,
	PermViewAllNodesInfo:   allButNone,
	PermViewNodeInfo:       allButNone,
	PermViewClusterInfo:    allButNone,
	PermViewAllBDBsInfo:    allButNone,
	PermViewBDBInfo:        allButNone,
	PermViewAllShardStats:  allButNone,
	PermStartNodeAction:    adminOnly,
	PermCancelNodeAction:   adminOnly,
	PermUpdateNode:         adminOnly,
	PermUpdateCluster:      adminOnly,
	PermCreateBDB:          dbWriters,
	PermUpdateBDB:          dbWriters,
	PermDeleteBDB:          dbWriters,
	PermViewAllUsersInfo:   userManager,
	PermCreateNewUser:      userManager,
	PermUpdateUser:         userManager,
	PermDeleteUser:         userManager,
}

// Allowed reports whether role holds permission.
func Allowed(role, permission string) bool {
	if permission == permAuthenticated {
		return true
	}
	return slices.Contains(permissionRoles[permission], role)
}

// PermissionsOf lists the permissions a role holds, sorted.
func PermissionsOf(role string) []string {
	out := []string{}
	for p, roles := range permissionRoles {
		if slices.Contains(roles, role) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}
