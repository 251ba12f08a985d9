package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// actionFlags are the body fields of one node action as flags: each set
// flag goes into the body, each unset one is left to the server's default.
type actionFlags struct {
	bools   map[string]*bool
	strs    map[string]*string
	lists   map[string]*[]string
	timeout *int
	wait    bool
	dryRun  bool
}

func newActionFlags(fs *pflag.FlagSet, bools map[string]string, strs map[string]string, lists map[string]string) *actionFlags {
	f := &actionFlags{bools: map[string]*bool{}, strs: map[string]*string{}, lists: map[string]*[]string{}}
	for name, help := range bools {
		f.bools[name] = fs.Bool(flagName(name), false, help)
	}
	for name, help := range strs {
		f.strs[name] = fs.String(flagName(name), "", help)
	}
	for name, help := range lists {
		f.lists[name] = fs.StringSlice(flagName(name), nil, help)
	}
	f.timeout = fs.Int("deadline-seconds", 0, "the action's time budget in seconds (default 600)")
	fs.BoolVar(&f.wait, "wait", false, "follow the action to its end with live progress (exit 3 unless it completed)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "print the plan the checks and the planner make; start nothing")
	return f
}

// flagName is a body field as a flag: overwrite_snapshot → overwrite-snapshot.
func flagName(field string) string { return strings.ReplaceAll(field, "_", "-") }

// body is the JSON body of the flags set on fs.
func (f *actionFlags) body(fs *pflag.FlagSet) string {
	m := map[string]any{}
	for name, v := range f.bools {
		if fs.Changed(flagName(name)) {
			m[name] = *v
		}
	}
	for name, v := range f.strs {
		if fs.Changed(flagName(name)) {
			m[name] = *v
		}
	}
	for name, v := range f.lists {
		if fs.Changed(flagName(name)) {
			m[name] = *v
		}
	}
	if fs.Changed("deadline-seconds") {
		m["deadline_seconds"] = *f.timeout
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// nodeAction is one node action's command: "cnmctl node N <verb>".
// verb is the command's name under its parent (on, off, remove), said
// the words operators type after the node's uid.
func (a *app) nodeAction(verb, said, action, short, long string, bools, strs, lists map[string]string) *cobra.Command {
	cmd := &cobra.Command{Use: verb + " NODE", Short: short, Long: long, Args: exactArgs(1, "a node uid"),
		Annotations: map[string]string{"use": "cnmctl node NODE " + said + " [flags]"},
		Example:     fmt.Sprintf("  cnmctl node 2 %s --dry-run\n  cnmctl node 2 %s --wait", said, said)}
	cmd.SetUsageTemplate(strings.Replace(cmd.UsageTemplate(), "{{.UseLine}}", `{{index .Annotations "use"}}`, 1))
	f := newActionFlags(cmd.Flags(), bools, strs, lists)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		uid, err := uidArg("NODE", args[0])
		if err != nil {
			return err
		}
		body := f.body(c.Flags())
		if f.dryRun {
			return a.dryRun(c.Context(), uid, action, body)
		}
		return a.start(c.Context(), target{node: uid, action: action, start: true, params: body}, f.wait)
	}
	return cmd
}

// start submits an action; with wait it follows it to its end.
func (a *app) start(ctx context.Context, t target, wait bool) error {
	if wait {
		return a.follow(ctx, t)
	}
	path := actionPath(t.node, t.action)
	out, err := a.call(ctx, http.MethodPost, path, t.params)
	if err != nil {
		if out != nil && a.output != "table" {
			_ = a.emit(out, nil)
		}
		return err
	}
	if a.output != "table" {
		return a.emit(out, nil)
	}
	var obj actionObj
	_ = json.Unmarshal(out, &obj)
	fmt.Fprintf(a.stdout, "%s of node %s %s (task %s)\nfollow it: cnmctl watch %s %s\n", t.action, t.node, obj.Status, obj.TaskID, t.node, t.action)
	return nil
}

// follow follows an action with the chosen progress view. Ctrl-C stops
// watching only: the action goes on, and cnmctl says how to cancel it.
func (a *app) follow(ctx context.Context, t target) error {
	c, err := a.api()
	if err != nil {
		return err
	}
	v, err := newView(a.progress, a.stderr)
	if err != nil {
		return usageError{err}
	}
	data, ferr := follow(ctx, c, t, v)
	if errors.Is(ferr, context.Canceled) {
		fmt.Fprintf(a.stderr, "stopped watching; %s of node %s goes on. Watch it again: cnmctl watch %s %s; cancel it: cnmctl action cancel %s %s\n",
			t.action, t.node, t.node, t.action, t.node, t.action)
		return ferr
	}
	// An error answer is the error's to say, except as JSON or YAML.
	var obj actionObj
	if data != nil && (a.output != "table" || json.Unmarshal(data, &obj) == nil && obj.TaskID != "") {
		if err := a.emit(data, actionTable(oneOf[actionObj])); err != nil {
			return err
		}
	}
	return ferr
}

// dryRun prints the plan of an action.
func (a *app) dryRun(ctx context.Context, node, action, body string) error {
	path := actionPath(node, action) + "?dry_run=true"
	return a.show(ctx, http.MethodPost, path, body, planTable)
}

func planTable(w io.Writer, body []byte) error {
	var v struct {
		Plan []map[string]any `json:"plan"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	row(w, "STEP", "KIND", "DETAILS")
	for i, st := range v.Plan {
		kind, _ := st["kind"].(string)
		var details []string
		for _, k := range []string{"shard", "bdb", "from", "to", "endpoint", "snapshot", "message"} {
			if x, ok := st[k]; ok {
				details = append(details, fmt.Sprintf("%s=%v", k, x))
			}
		}
		row(w, i+1, kind, dash(strings.Join(details, " ")))
	}
	return nil
}

func (a *app) nodeCmd() *cobra.Command {
	node := &cobra.Command{Use: "node", Short: "Show nodes and run node actions on them", Args: noArgs,
		Long: `The node's uid comes first, as rladmin and operators say it:

  cnmctl node 2                      show node 2
  cnmctl node 2 maintenance on       empty node 2 for maintenance
  cnmctl node 2 maintenance off      bring it back as its snapshot says
  cnmctl node 2 enslave              fail its masters over, move its endpoints
  cnmctl node 2 remove               take it out of the cluster

Every action takes --wait (follow it live), --dry-run (print its plan) and
--deadline-seconds.`,
		Example: "  cnmctl node list\n  cnmctl node 2 maintenance on --wait\n  cnmctl node 3 remove --wait-for-persistence --dry-run"}
	node.AddCommand(&cobra.Command{Use: "list", Short: "List the nodes", Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.show(c.Context(), http.MethodGet, "/v1/nodes", "", nodeTable(listOf[nodeObj]))
		}})
	get := &cobra.Command{Use: "get NODE", Short: "Show a node", Args: exactArgs(1, "a node uid"),
		Annotations: map[string]string{"use": "cnmctl node NODE [flags]"},
		RunE: func(c *cobra.Command, args []string) error {
			uid, err := uidArg("NODE", args[0])
			if err != nil {
				return err
			}
			return a.show(c.Context(), http.MethodGet, "/v1/nodes/"+uid, "", nodeTable(oneOf[nodeObj]))
		}}
	maint := &cobra.Command{Use: "maintenance", Short: "Put a node in maintenance or take it out", Args: noArgs}
	maint.AddCommand(a.nodeAction("on", "maintenance on", "maintenance_on", "Empty the node for maintenance, remembering its shards in a snapshot",
		"Masters with a replica elsewhere fail over, replicas and masters without one move away, endpoints\nare rebound; the node stops accepting shards.",
		map[string]string{
			"overwrite_snapshot":          "replace the node's maintenance snapshot if one exists",
			"evict_ha_replica":            "move replicas of replicated databases away (default true)",
			"evict_active_active_replica": "move Active-Active replicas away (default true)",
			"keep_slave_shards":           "deprecated: true means neither evict_* moves anything",
		}, nil, map[string]string{"evict_dbs": "only these databases' shards (uids, comma-separated)"}))
	maint.AddCommand(a.nodeAction("off", "maintenance off", "maintenance_off", "Bring the node back as its maintenance snapshot says", "",
		map[string]string{"skip_shards_restore": "accept shards again without moving the snapshot's shards back"},
		map[string]string{"snapshot_name": "the snapshot to restore (default: the node's latest)"}, nil))
	node.AddCommand(get, maint,
		a.nodeAction("enslave", "enslave", "enslave_node", "Fail the node's masters over to their replicas and move its endpoints", "",
			map[string]string{"shards_only": "only the shards", "endpoints_only": "only the endpoints"}, nil, nil),
		a.nodeAction("remove", "remove", "remove", "Take the node out of the cluster, its shards and endpoints moved first", "",
			map[string]string{"wait_for_persistence": "each moved shard of a persistent database writes its file on its new node first (default: the policy's persistent_node_removal)"}, nil, nil))
	for _, name := range []string{"cert", "rotate-cert"} {
		short := "Show the node's certificates"
		if name == "rotate-cert" {
			short = "Have the node replace its certificate now and revoke the old one"
		}
		node.AddCommand(&cobra.Command{Use: name + " NODE", Short: short, Args: exactArgs(1, "a node uid"),
			Annotations: map[string]string{"use": "cnmctl node NODE " + name},
			RunE:        func(c *cobra.Command, args []string) error { return a.cert(c, name, args[0]) }})
	}
	return node
}

func (a *app) actionCmd() *cobra.Command {
	act := &cobra.Command{Use: "action", Short: "List, show and cancel node actions; or start one by name",
		Long: `action list, get and cancel read and cancel node actions. "cnmctl action NODE ACTION
[PARAMS]" starts one by its API name with a JSON body and follows it to its end (the
form of cnmctl's first releases; "cnmctl node NODE ..." has a flag per field).`,
		Example: "  cnmctl action list\n  cnmctl action get 2 maintenance_on\n  cnmctl action cancel 2 maintenance_on\n  cnmctl action 2 maintenance_on '{\"keep_slave_shards\":true}'",
		Args:    cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) < 2 || len(args) > 3 {
				return usagef("action needs list, get, cancel, or NODE ACTION [PARAMS] (see cnmctl action --help)")
			}
			uid, err := uidArg("NODE", args[0])
			if err != nil {
				return err
			}
			t := target{node: uid, action: args[1], start: true}
			if len(args) == 3 {
				t.params = args[2]
			}
			return a.follow(c.Context(), t)
		}}
	var node string
	list := &cobra.Command{Use: "list", Short: "List the actions of every node, or of one (--node)", Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			path := "/v1/nodes/actions"
			if node != "" {
				uid, err := uidArg("--node", node)
				if err != nil {
					return err
				}
				path = "/v1/nodes/" + uid + "/actions"
			}
			return a.show(c.Context(), http.MethodGet, path, "", actionTable(actionsList))
		}}
	list.Flags().StringVar(&node, "node", "", "only this node's actions")
	act.AddCommand(list,
		&cobra.Command{Use: "get NODE ACTION", Short: "Show one node's action", Args: exactArgs(2, "a node uid and an action name"),
			RunE: func(c *cobra.Command, args []string) error {
				uid, err := uidArg("NODE", args[0])
				if err != nil {
					return err
				}
				return a.show(c.Context(), http.MethodGet, actionPath(uid, args[1]), "", actionTable(oneOf[actionObj]))
			}},
		&cobra.Command{Use: "cancel NODE ACTION", Short: "Cancel a node's action (or forget its ended record)", Args: exactArgs(2, "a node uid and an action name"),
			RunE: func(c *cobra.Command, args []string) error {
				uid, err := uidArg("NODE", args[0])
				if err != nil {
					return err
				}
				if _, err := a.call(c.Context(), http.MethodDelete, actionPath(uid, args[1]), ""); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s of node %s: cancel asked; it ends cancelled once its step in flight ends\n", args[1], uid)
				return nil
			}})
	return act
}

func (a *app) watchCmd() *cobra.Command {
	return &cobra.Command{Use: "watch NODE ACTION", Short: "Follow a node's latest action of that kind to its end",
		Example: "  cnmctl watch 2 maintenance_on", Args: exactArgs(2, "a node uid and an action name"),
		RunE: func(c *cobra.Command, args []string) error {
			uid, err := uidArg("NODE", args[0])
			if err != nil {
				return err
			}
			return a.follow(c.Context(), target{node: uid, action: args[1]})
		}}
}
