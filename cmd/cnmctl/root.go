package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes, as `cnmctl help exit-codes` documents them.
const (
	exitOK           = 0
	exitError        = 1 // the request failed: an HTTP error, no node answering
	exitUsage        = 2 // the command line is wrong; nothing was sent
	exitActionFailed = 3 // the action ended failed, aborted or cancelled
)

// usageError is a command line cnmctl refuses before sending anything.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// actionEnded is an action that ended other than completed.
type actionEnded struct{ err error }

func (e actionEnded) Error() string { return e.err.Error() }
func (e actionEnded) Unwrap() error { return e.err }

// exitCode maps what run returned to the process's exit code.
func exitCode(err error) int {
	var ue usageError
	var ae actionEnded
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ae):
		return exitActionFailed
	// Flag errors come wrapped (SetFlagErrorFunc); these two refusals of
	// cobra's carry no type of theirs.
	case strings.HasPrefix(err.Error(), "unknown command"), strings.HasPrefix(err.Error(), "required flag"):
		return exitUsage
	}
	return exitError
}

// app is one run of cnmctl: its settings once the command line, the
// environment and the config file are read, and where it writes.
type app struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer

	url, user, password, ca string
	output, progress        string
	contextName, config     string

	c *client // made on first use
}

// run is cnmctl without the process: testable with fake args and writers.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	a := &app{getenv: getenv, stdin: os.Stdin, stdout: stdout, stderr: stderr}
	root := a.root()
	root.SetArgs(nodeFirst(singleDashLong(args)))
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

// buildVersion is what make build stamps (-ldflags -X): git describe of
// the tree it built.
var buildVersion string

// version is the stamped version, else the module version and VCS
// revision go build recorded.
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "cnmctl",
		Short: "The command-line client of a cnm cluster",
		Long: `cnmctl talks to the REST API of any node of a cnm cluster: the cluster's
status, node actions (maintenance, removal, demotion of a node's masters) followed
live, databases, users and the cluster policy.

Credentials and nodes come from flags, else the environment (CNM_URL, CNM_USER,
CNM_PASSWORD, CNM_CA), else the current context of the config file
(~/.config/cnm/config.yaml, or CNM_CONFIG; see "cnmctl help config").`,
		Example: `  export CNM_PASSWORD=...
  cnmctl status
  cnmctl node 2 maintenance on --wait
  cnmctl action list
  cnmctl db list -o yaml`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.url, "url", "", "the API of one or more nodes, comma-separated: cnmctl moves on to the next when one cannot be reached (CNM_URL)")
	pf.StringVar(&a.user, "user", "", "user email (CNM_USER; default admin@cnm.local)")
	pf.StringVar(&a.password, "password", "", "password; prefer CNM_PASSWORD or a context, as any local user can read a command line (CNM_PASSWORD)")
	pf.StringVar(&a.ca, "ca", "", "cluster CA file; without it the server certificate is not verified, like curl -k (CNM_CA)")
	pf.StringVarP(&a.output, "output", "o", "table", "output: table, json or yaml")
	pf.StringVar(&a.progress, "progress", "auto", "how --wait, action and watch show progress: auto (a bar on a terminal, lines otherwise), bar, lines or none")
	pf.StringVar(&a.contextName, "context", "", "the config file's context to use (default: its current-context)")
	pf.StringVar(&a.config, "config", "", "config file (CNM_CONFIG; default ~/.config/cnm/config.yaml)")
	root.PersistentPreRunE = func(*cobra.Command, []string) error { return a.settle() }

	root.AddCommand(a.statusCmd(), a.nodeCmd(), a.actionCmd(), a.watchCmd(), a.dbCmd(), a.userCmd(), a.policyCmd())
	groups(root)
	root.AddCommand(a.rawCmds()...)
	root.AddCommand(exitCodesTopic(), configTopic())
	return root
}

// groups makes every command that only holds subcommands refuse an
// unknown one as a usage error (cobra would show the help and exit 0),
// and show its help when named alone.
func groups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		groups(sub)
	}
	if c.HasParent() && c.HasSubCommands() && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("%s has no command %q (see %s --help)", c.CommandPath(), args[0], c.CommandPath())
			}
			return c.Help()
		}
	}
}

// settle fills every setting the flags left unset from the environment,
// then the config file's context, then the defaults, and checks them.
func (a *app) settle() error {
	switch a.output {
	case "table", "json", "yaml":
	case "pretty": // the name of indented JSON before tables existed
		a.output = "json"
	default:
		return usagef("--output must be table, json or yaml, got %q", a.output)
	}
	if _, err := newView(a.progress, a.stderr); err != nil {
		return usageError{err}
	}
	ctx, err := a.loadContext()
	if err != nil {
		return err
	}
	pick := func(flag *string, env, fromCtx, def string) {
		if *flag != "" {
			return
		}
		if v := a.getenv(env); v != "" {
			*flag = v
			return
		}
		if fromCtx != "" {
			*flag = fromCtx
			return
		}
		*flag = def
	}
	pick(&a.url, "CNM_URL", ctx.URL, defaultURLs)
	pick(&a.user, "CNM_USER", ctx.User, "admin@cnm.local")
	pick(&a.password, "CNM_PASSWORD", ctx.Password, "")
	pick(&a.ca, "CNM_CA", ctx.CA, "")
	return nil
}

// api is the client, made once the settings are known. Every command that
// sends a request asks for it, so that a missing password is said before
// anything is sent.
func (a *app) api() (*client, error) {
	if a.c != nil {
		return a.c, nil
	}
	if a.password == "" {
		return nil, usagef("no password: set CNM_PASSWORD, --password, or a context's password in the config file")
	}
	c, err := newClient(a.url, a.user, a.password, a.ca)
	if err != nil {
		return nil, usageError{err}
	}
	a.c = c
	return c, nil
}

// singleDashLong accepts the long flags of cnmctl's first releases written
// with one dash (-url, -o json, -progress lines): scripts keep working.
func singleDashLong(args []string) []string {
	out := make([]string, 0, len(args))
	for i, arg := range args {
		if arg == "--" {
			return append(out, args[i:]...)
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(arg, "-"), "=")
		switch {
		case strings.HasPrefix(arg, "--") || !strings.HasPrefix(arg, "-"):
		case name == "url" || name == "user" || name == "password" || name == "ca" || name == "progress" ||
			name == "context" || name == "config" || name == "output":
			arg = "-" + arg
		}
		out = append(out, arg)
	}
	return out
}

// nodeFirst turns "node 2 maintenance on" into "node maintenance on 2":
// operators name the node first, as rladmin does, while the command tree
// is verb first.
func nodeFirst(args []string) []string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "node" {
			if !strings.HasPrefix(args[i], "-") {
				return args
			}
			if takesValue(args[i]) {
				i++
			}
			continue
		}
		uid := args[i+1]
		if !isUID(uid) {
			return args
		}
		rest := args[i+2:]
		words := 0
		switch {
		case len(rest) == 0 || strings.HasPrefix(rest[0], "-"):
			// "node 2" alone: show it.
			out := append(append(append([]string{}, args[:i+1]...), "get", uid), rest...)
			return out
		case rest[0] == "maintenance" && len(rest) > 1:
			words = 2
		default:
			words = 1
		}
		out := append([]string{}, args[:i+1]...)
		out = append(out, rest[:words]...)
		out = append(out, uid)
		return append(out, rest[words:]...)
	}
	return args
}

// takesValue: the global flag arg is given its value as the next argument.
func takesValue(arg string) bool {
	if strings.Contains(arg, "=") {
		return false
	}
	switch strings.TrimLeft(arg, "-") {
	case "url", "user", "password", "ca", "o", "output", "progress", "context", "config":
		return true
	}
	return false
}

func isUID(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
