package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// The API objects as cnmctl's tables show them (docs/API.md).
type (
	nodeObj struct {
		UID             int    `json:"uid"`
		Addr            string `json:"addr"`
		APIAddr         string `json:"api_addr"`
		Status          string `json:"status"`
		AcceptServers   bool   `json:"accept_servers"`
		MaxRedisServers int    `json:"max_redis_servers"`
		TotalMemory     int64  `json:"total_memory"`
		ShardCount      int    `json:"shard_count"`
		RackID          string `json:"rack_id"`
		SoftwareVersion string `json:"software_version"`
		Uptime          *int64 `json:"uptime"`
	}
	bdbObj struct {
		UID             int    `json:"uid"`
		Name            string `json:"name"`
		MemorySize      int64  `json:"memory_size"`
		ShardsCount     int    `json:"shards_count"`
		Replication     bool   `json:"replication"`
		DataPersistence string `json:"data_persistence"`
		Status          string `json:"status"`
		Endpoints       []struct {
			UID     string   `json:"uid"`
			NodeUID string   `json:"node_uid"`
			Addr    []string `json:"addr"`
			Port    int      `json:"port"`
		} `json:"endpoints"`
	}
	shardObj struct {
		UID           string `json:"uid"`
		BDBUID        int    `json:"bdb_uid"`
		NodeUID       string `json:"node_uid"`
		Role          string `json:"role"`
		Status        string `json:"status"`
		AssignedSlots string `json:"assigned_slots"`
		UsedMemory    int64  `json:"used_memory"`
		Keys          int64  `json:"keys"`
	}
	userObj struct {
		UID   int    `json:"uid"`
		Email string `json:"email"`
		Name  string `json:"name"`
		Role  string `json:"role"`
	}
	// actionObj is the part of an action object (docs/API.md §5.1) cnmctl
	// shows and follows.
	actionObj struct {
		Action         string  `json:"action"`
		NodeUID        string  `json:"node_uid"`
		TaskID         string  `json:"task_id"`
		Status         string  `json:"status"`
		Progress       float64 `json:"progress"`
		ErrorCode      string  `json:"error_code"`
		ErrorMessage   string  `json:"error_message"`
		AdditionalInfo struct {
			PendingOps int    `json:"pending_ops"`
			DoneOps    int    `json:"done_ops"`
			Waiting    string `json:"waiting"`
			Events     []struct {
				Time    int64  `json:"time"`
				Message string `json:"message"`
			} `json:"events"`
		} `json:"additional_info"`
	}
)

// listOf decodes a JSON array of T.
func listOf[T any](body []byte) ([]T, error) {
	var v []T
	return v, json.Unmarshal(body, &v)
}

// oneOf decodes a JSON object as T, or a list of them when one is wanted.
func oneOf[T any](body []byte) ([]T, error) {
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	return []T{v}, nil
}

func nodeTable(decode func([]byte) ([]nodeObj, error)) tabler {
	return func(w io.Writer, body []byte) error {
		nodes, err := decode(body)
		if err != nil {
			return err
		}
		row(w, "NODE", "ADDRESS", "STATUS", "ACCEPTS SHARDS", "SHARDS", "MEMORY", "RACK", "VERSION")
		for _, n := range nodes {
			row(w, n.UID, n.APIAddr, n.Status, yesNo(n.AcceptServers), fmt.Sprintf("%d/%d", n.ShardCount, n.MaxRedisServers),
				mib(n.TotalMemory), dash(n.RackID), n.SoftwareVersion)
		}
		return nil
	}
}

func bdbTable(decode func([]byte) ([]bdbObj, error)) tabler {
	return func(w io.Writer, body []byte) error {
		dbs, err := decode(body)
		if err != nil {
			return err
		}
		row(w, "DB", "NAME", "MEMORY", "SHARDS", "REPLICATION", "PERSISTENCE", "STATUS", "ENDPOINT")
		for _, d := range dbs {
			row(w, d.UID, d.Name, mib(d.MemorySize), d.ShardsCount, yesNo(d.Replication), d.DataPersistence, d.Status, endpointOf(d))
		}
		return nil
	}
}

func endpointOf(d bdbObj) string {
	var eps []string
	for _, e := range d.Endpoints {
		host := ""
		if len(e.Addr) > 0 {
			host = e.Addr[0]
		}
		eps = append(eps, fmt.Sprintf("%s:%d (node %s)", host, e.Port, e.NodeUID))
	}
	return dash(strings.Join(eps, ", "))
}

func shardTable(w io.Writer, body []byte) error {
	shards, err := listOf[shardObj](body)
	if err != nil {
		return err
	}
	slices.SortFunc(shards, func(a, b shardObj) int { return numCompare(a.UID, b.UID) })
	row(w, "SHARD", "DB", "NODE", "ROLE", "SLOTS", "STATUS", "KEYS", "USED MEMORY")
	for _, s := range shards {
		row(w, s.UID, s.BDBUID, s.NodeUID, s.Role, s.AssignedSlots, s.Status, s.Keys, mib(s.UsedMemory))
	}
	return nil
}

func userTable(decode func([]byte) ([]userObj, error)) tabler {
	return func(w io.Writer, body []byte) error {
		users, err := decode(body)
		if err != nil {
			return err
		}
		row(w, "USER", "EMAIL", "NAME", "ROLE")
		for _, u := range users {
			row(w, u.UID, u.Email, dash(u.Name), u.Role)
		}
		return nil
	}
}

func actionTable(decode func([]byte) ([]actionObj, error)) tabler {
	return func(w io.Writer, body []byte) error {
		acts, err := decode(body)
		if err != nil {
			return err
		}
		row(w, "NODE", "ACTION", "STATUS", "PROGRESS", "STEPS", "TASK", "LAST EVENT")
		for _, a := range acts {
			row(w, a.NodeUID, a.Action, a.Status, fmt.Sprintf("%.1f%%", a.Progress),
				fmt.Sprintf("%d/%d", a.AdditionalInfo.DoneOps, a.AdditionalInfo.DoneOps+a.AdditionalInfo.PendingOps), a.TaskID, dash(a.lastLine()))
		}
		return nil
	}
}

// lastLine is what an action last said: why it waits, its error, or its
// last event.
func (a actionObj) lastLine() string {
	switch {
	case a.AdditionalInfo.Waiting != "":
		return "waits: " + a.AdditionalInfo.Waiting
	case a.ErrorCode != "":
		return a.ErrorCode + ": " + a.ErrorMessage
	case len(a.AdditionalInfo.Events) > 0:
		return a.AdditionalInfo.Events[len(a.AdditionalInfo.Events)-1].Message
	}
	return ""
}

// actionsList decodes {"actions": [...]}.
func actionsList(body []byte) ([]actionObj, error) {
	var v struct {
		Actions []actionObj `json:"actions"`
	}
	return v.Actions, json.Unmarshal(body, &v)
}

// kvTable shows a flat JSON object as KEY VALUE rows, sorted.
func kvTable(w io.Writer, body []byte) error {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	row(w, "KEY", "VALUE")
	for _, k := range keys {
		v, _ := json.Marshal(m[k])
		row(w, k, strings.Trim(string(v), `"`))
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func numCompare(a, b string) int {
	x, ex := strconv.Atoi(a)
	y, ey := strconv.Atoi(b)
	if ex == nil && ey == nil {
		return x - y
	}
	return strings.Compare(a, b)
}

// exactArgs is cobra.ExactArgs whose refusal is a usage error.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s (see %s --help)", c.CommandPath(), names, c.CommandPath())
		}
		for _, a := range args {
			if strings.HasPrefix(a, "-") {
				return usagef("%s: %q is not %s", c.CommandPath(), a, names)
			}
		}
		return nil
	}
}

// noArgs refuses any argument as a usage error.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q (see %s --help)", c.CommandPath(), args[0], c.CommandPath())
	}
	return nil
}

// uidArg checks a uid argument.
func uidArg(what, s string) (string, error) {
	if !isUID(s) {
		return "", usagef("%s must be a number, got %q", what, s)
	}
	return s, nil
}

func (a *app) dbCmd() *cobra.Command {
	db := &cobra.Command{Use: "db", Short: "List, show, create and delete databases", Args: noArgs,
		Example: "  cnmctl db list\n  cnmctl db create cache --memory-size 256MiB --shards 2 --replication\n  cnmctl db delete 3"}
	db.AddCommand(&cobra.Command{Use: "list", Short: "List the databases", Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.show(c.Context(), http.MethodGet, "/v1/bdbs", "", bdbTable(listOf[bdbObj]))
		}})
	db.AddCommand(a.getOne("DB", "database", "/v1/bdbs/", bdbTable(oneOf[bdbObj])))
	var size, persistence string
	var shards int
	var replication bool
	create := &cobra.Command{Use: "create NAME", Short: "Create a database", Args: exactArgs(1, "a database name"),
		Example: "  cnmctl db create cache --memory-size 256MiB --shards 2 --replication --persistence aof",
		RunE: func(c *cobra.Command, args []string) error {
			bytes, err := parseSize(size)
			if err != nil {
				return usageError{err}
			}
			body, _ := json.Marshal(map[string]any{"name": args[0], "memory_size": bytes, "shards_count": shards,
				"replication": replication, "data_persistence": persistence})
			return a.show(c.Context(), http.MethodPost, "/v1/bdbs", string(body), bdbTable(oneOf[bdbObj]))
		}}
	create.Flags().StringVar(&size, "memory-size", "", "memory of the database: bytes, or with KiB, MiB, GiB (required)")
	create.Flags().IntVar(&shards, "shards", 1, "number of master shards")
	create.Flags().BoolVar(&replication, "replication", false, "give every master a replica on another node")
	create.Flags().StringVar(&persistence, "persistence", "disabled", "disabled, snapshot or aof")
	_ = create.MarkFlagRequired("memory-size")
	db.AddCommand(create)
	db.AddCommand(a.deleteOne("DB", "database", "/v1/bdbs/"))
	db.AddCommand(&cobra.Command{Use: "shards", Short: "List every shard of the cluster", Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.show(c.Context(), http.MethodGet, "/v1/shards", "", shardTable)
		}})
	return db
}

// getOne is "get ARG": shows the object at path+uid, what naming it.
func (a *app) getOne(arg, what, path string, table tabler) *cobra.Command {
	return &cobra.Command{Use: "get " + arg, Short: "Show one " + what, Args: exactArgs(1, "a "+what+" uid"),
		RunE: func(c *cobra.Command, args []string) error {
			uid, err := uidArg(arg, args[0])
			if err != nil {
				return err
			}
			return a.show(c.Context(), http.MethodGet, path+uid, "", table)
		}}
}

// deleteOne is "delete ARG": deletes the object at path+uid.
func (a *app) deleteOne(arg, what, path string) *cobra.Command {
	return &cobra.Command{Use: "delete " + arg, Short: "Delete a " + what, Args: exactArgs(1, "a "+what+" uid"),
		RunE: func(c *cobra.Command, args []string) error {
			uid, err := uidArg(arg, args[0])
			if err != nil {
				return err
			}
			if _, err := a.call(c.Context(), http.MethodDelete, path+uid, ""); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s %s deleted\n", what, uid)
			return nil
		}}
}

// parseSize reads "268435456", "256MiB", "1GiB", "512KiB".
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}}
	mul := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mul = rest, u.mul
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("--memory-size must be a positive size such as 268435456 or 256MiB, got %q", s)
	}
	return n * mul, nil
}

func (a *app) userCmd() *cobra.Command {
	user := &cobra.Command{Use: "user", Short: "List, show, create and delete users", Args: noArgs,
		Example: "  cnmctl user list\n  CNM_NEW_PASSWORD=... cnmctl user create ops@example.com --role db_viewer"}
	user.AddCommand(&cobra.Command{Use: "list", Short: "List the users", Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.show(c.Context(), http.MethodGet, "/v1/users", "", userTable(listOf[userObj]))
		}})
	user.AddCommand(a.getOne("USER", "user", "/v1/users/", userTable(oneOf[userObj])))
	var role, name string
	create := &cobra.Command{Use: "create EMAIL", Short: "Create a user; the password is read from CNM_NEW_PASSWORD", Args: exactArgs(1, "an email"),
		RunE: func(c *cobra.Command, args []string) error {
			pw := a.getenv("CNM_NEW_PASSWORD")
			if pw == "" {
				return usagef("set CNM_NEW_PASSWORD to the new user's password (a command line is readable by every local user)")
			}
			body, _ := json.Marshal(map[string]any{"email": args[0], "name": name, "role": role, "password": pw})
			return a.show(c.Context(), http.MethodPost, "/v1/users", string(body), userTable(oneOf[userObj]))
		}}
	create.Flags().StringVar(&role, "role", "", "admin, cluster_member, cluster_viewer, db_member, db_viewer or none (required)")
	create.Flags().StringVar(&name, "name", "", "the user's name")
	_ = create.MarkFlagRequired("role")
	user.AddCommand(create)
	user.AddCommand(a.deleteOne("USER", "user", "/v1/users/"))
	return user
}

func (a *app) policyCmd() *cobra.Command {
	policy := &cobra.Command{Use: "policy", Short: "Show or change the cluster policy", Args: noArgs,
		Example: "  cnmctl policy get\n  cnmctl policy set default_shards_placement=sparse rack_aware=true"}
	policy.AddCommand(&cobra.Command{Use: "get", Short: "Show the cluster policy", Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.show(c.Context(), http.MethodGet, "/v1/cluster/policy", "", kvTable)
		}})
	policy.AddCommand(&cobra.Command{Use: "set KEY=VALUE...", Short: "Change policy fields (true/false for flags)",
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("policy set needs at least one KEY=VALUE")
			}
			fields := map[string]any{}
			for _, kv := range args {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usagef("policy set: %q is not KEY=VALUE", kv)
				}
				switch v {
				case "true", "false":
					fields[k] = v == "true"
				default:
					fields[k] = v
				}
			}
			body, _ := json.Marshal(fields)
			return a.show(c.Context(), http.MethodPut, "/v1/cluster/policy", string(body), kvTable)
		}})
	return policy
}

// rawCmds are the requests by path, and the shortcuts of the GET endpoints.
func (a *app) rawCmds() []*cobra.Command {
	var cmds []*cobra.Command
	for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodPost, http.MethodPut} {
		use := strings.ToLower(m) + " PATH"
		args := exactArgs(1, "a path starting with /")
		if m == http.MethodPost || m == http.MethodPut {
			use += " [BODY]"
			args = func(c *cobra.Command, as []string) error {
				if len(as) < 1 || len(as) > 2 {
					return usagef("%s needs a path and, optionally, a JSON body", c.CommandPath())
				}
				return nil
			}
		}
		cmds = append(cmds, &cobra.Command{Use: use, Short: m + " any endpoint; BODY is JSON, \"-\" reads it from stdin", Args: args,
			Example: "  cnmctl get /v1/nodes/2\n  cnmctl put /v1/nodes/3 '{\"rack_id\":\"r2\"}'",
			RunE: func(c *cobra.Command, as []string) error {
				if !strings.HasPrefix(as[0], "/") {
					return usagef("%s needs a path starting with /, got %q", c.CommandPath(), as[0])
				}
				body := ""
				if len(as) == 2 {
					body = as[1]
				}
				if body == "-" {
					b, err := io.ReadAll(a.stdin)
					if err != nil {
						return fmt.Errorf("read body from stdin: %w", err)
					}
					body = string(b)
				}
				return a.show(c.Context(), m, as[0], body, nil)
			}})
	}
	for _, name := range []string{"cluster", "nodes", "users", "ping"} {
		cmds = append(cmds, &cobra.Command{Use: name, Short: "GET /v1/" + name, Args: noArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				var t tabler
				switch name {
				case "nodes":
					t = nodeTable(listOf[nodeObj])
				case "users":
					t = userTable(listOf[userObj])
				}
				return a.show(c.Context(), http.MethodGet, "/v1/"+name, "", t)
			}})
	}
	// The node certificate commands of the first releases, at the top.
	for _, name := range []string{"cert", "rotate-cert"} {
		cmds = append(cmds, &cobra.Command{Use: name + " NODE", Hidden: true, Args: exactArgs(1, "a node uid"),
			RunE: func(c *cobra.Command, args []string) error { return a.cert(c, name, args[0]) }})
	}
	return cmds
}

// cert shows a node's certificates, or has it rotate its certificate.
func (a *app) cert(c *cobra.Command, name, node string) error {
	uid, err := uidArg("NODE", node)
	if err != nil {
		return err
	}
	if name == "cert" {
		return a.show(c.Context(), http.MethodGet, "/v1/nodes/"+uid+"/certificate", "", nil)
	}
	return a.show(c.Context(), http.MethodPost, "/v1/nodes/"+url.PathEscape(uid)+"/certificate/rotate", "", nil)
}
