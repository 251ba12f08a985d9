package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// statusParts are the answers cnmctl status is made of, by the key they
// have in its JSON and YAML output.
var statusParts = []struct{ key, path string }{
	{"cluster", "/v1/cluster"},
	{"nodes", "/v1/nodes"},
	{"nodes_status", "/v1/nodes/status"},
	{"bdbs", "/v1/bdbs"},
	{"shards", "/v1/shards"},
	{"actions", "/v1/nodes/actions"},
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{Use: "status", Short: "The cluster at a glance: nodes, databases, endpoints, shards and running actions",
		Long: `status reads the cluster, its nodes, databases, shards and node actions, and shows
them as tables, as rladmin status does: which node leads, which are in maintenance,
where each database's endpoint and shards are, and the actions not yet ended with
their progress. With -o json or yaml, the answers themselves, under one key each.`,
		Example: "  cnmctl status\n  cnmctl status -o yaml", Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			all := map[string]json.RawMessage{}
			for _, p := range statusParts {
				body, err := a.call(c.Context(), http.MethodGet, p.path, "")
				if err != nil {
					return err
				}
				all[p.key] = body
			}
			doc, err := json.Marshal(all)
			if err != nil {
				return err
			}
			if a.output != "table" {
				return a.emit(doc, nil)
			}
			var buf bytes.Buffer
			if err := statusTables(&buf, all); err != nil {
				return fmt.Errorf("status as tables: %w", err)
			}
			_, err = a.stdout.Write(buf.Bytes())
			return err
		}}
}

func statusTables(out io.Writer, all map[string]json.RawMessage) error {
	var cl struct {
		Name    string `json:"name"`
		Leader  int    `json:"leader"`
		Term    uint64 `json:"term"`
		Members []struct {
			UID      int    `json:"uid"`
			Role     string `json:"role"`
			Suffrage string `json:"suffrage"`
		} `json:"members"`
	}
	if err := json.Unmarshal(all["cluster"], &cl); err != nil {
		return err
	}
	nodes, err := listOf[nodeObj](all["nodes"])
	if err != nil {
		return err
	}
	var ns map[string]struct {
		Maintenance  bool  `json:"maintenance"`
		MasterShards []int `json:"master_shards"`
		SlaveShards  []int `json:"slave_shards"`
	}
	if err := json.Unmarshal(all["nodes_status"], &ns); err != nil {
		return err
	}
	dbs, err := listOf[bdbObj](all["bdbs"])
	if err != nil {
		return err
	}
	acts, err := actionsList(all["actions"])
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "CLUSTER %s: leader node %d, term %d\n\n", cl.Name, cl.Leader, cl.Term)

	roles := map[int]string{}
	for _, m := range cl.Members {
		roles[m.UID] = m.Role
		if m.Suffrage != "voter" {
			roles[m.UID] += " (" + m.Suffrage + ")"
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(out, "NODES:")
	row(tw, "NODE", "ROLE", "ADDRESS", "STATUS", "MAINTENANCE", "ACCEPTS SHARDS", "MASTERS", "REPLICAS", "MEMORY", "RACK")
	slices.SortFunc(nodes, func(x, y nodeObj) int { return x.UID - y.UID })
	for _, n := range nodes {
		st := ns[strconv.Itoa(n.UID)]
		leader := ""
		if n.UID == cl.Leader {
			leader = "*"
		}
		row(tw, fmt.Sprintf("%s%d", leader, n.UID), dash(roles[n.UID]), n.APIAddr, n.Status, yesNo(st.Maintenance), yesNo(n.AcceptServers),
			len(st.MasterShards), len(st.SlaveShards), mib(n.TotalMemory), dash(n.RackID))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nDATABASES:")
	slices.SortFunc(dbs, func(x, y bdbObj) int { return x.UID - y.UID })
	if err := bdbTable(func([]byte) ([]bdbObj, error) { return dbs, nil })(tw, nil); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nENDPOINTS:")
	row(tw, "ENDPOINT", "DB", "NODE", "ADDRESS")
	for _, d := range dbs {
		for _, e := range d.Endpoints {
			host := ""
			if len(e.Addr) > 0 {
				host = e.Addr[0]
			}
			row(tw, e.UID, d.Name, e.NodeUID, fmt.Sprintf("%s:%d", host, e.Port))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nSHARDS:")
	if err := shardTable(tw, all["shards"]); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	var running []actionObj
	for _, a := range acts {
		if !terminal(a.Status) {
			running = append(running, a)
		}
	}
	fmt.Fprintln(out, "\nACTIONS (not ended):")
	if len(running) == 0 {
		fmt.Fprintln(out, "none")
		return nil
	}
	if err := actionTable(func([]byte) ([]actionObj, error) { return running, nil })(tw, nil); err != nil {
		return err
	}
	return tw.Flush()
}
