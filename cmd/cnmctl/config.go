package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// configFile is ~/.config/cnm/config.yaml: named contexts, each a cluster
// and the credentials to use there, as kubectl's kubeconfig holds them.
type configFile struct {
	CurrentContext string          `json:"current-context"`
	Contexts       []clusterConfig `json:"contexts"`
}

// clusterConfig is one context.
type clusterConfig struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
	CA       string `json:"ca"`
}

// configPath is where the config file is read from: --config, CNM_CONFIG,
// else the user's config directory.
func (a *app) configPath() (path string, explicit bool) {
	if a.config != "" {
		return a.config, true
	}
	if p := a.getenv("CNM_CONFIG"); p != "" {
		return p, true
	}
	dir := a.getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := a.getenv("HOME")
		if home == "" {
			return "", false
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "cnm", "config.yaml"), false
}

// loadContext returns the context to use: --context's, else the file's
// current one. No file is no context, unless one was asked for.
func (a *app) loadContext() (clusterConfig, error) {
	path, explicit := a.configPath()
	if path == "" {
		return clusterConfig{}, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit && a.contextName == "" {
		return clusterConfig{}, nil
	}
	if err != nil {
		return clusterConfig{}, usagef("config file: %v", err)
	}
	var cf configFile
	if err := yaml.UnmarshalStrict(data, &cf); err != nil {
		return clusterConfig{}, usagef("config file %s: %v", path, err)
	}
	name := a.contextName
	if name == "" {
		name = cf.CurrentContext
	}
	if name == "" {
		return clusterConfig{}, nil
	}
	for _, c := range cf.Contexts {
		if c.Name == name {
			return c, nil
		}
	}
	return clusterConfig{}, usagef("config file %s has no context %q", path, name)
}

// configTopic is "cnmctl help config".
func configTopic() *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Where cnmctl finds the cluster and the credentials",
		Long: `Each setting comes from the first of: its flag (--url, --user, --password,
--ca), its environment variable (CNM_URL, CNM_USER, CNM_PASSWORD, CNM_CA), the
context of the config file, the default (the three nodes of "make run" and the user
admin@cnm.local; no password).

The config file is ~/.config/cnm/config.yaml ($XDG_CONFIG_HOME/cnm/config.yaml),
or the file CNM_CONFIG or --config names. It holds named contexts; --context picks
one, else current-context:

  current-context: local
  contexts:
    - name: local
      url: https://127.0.0.1:9443,https://127.0.0.2:9443,https://127.0.0.3:9443
      user: admin@cnm.local
      password: secret
      ca: /path/to/ca.crt
    - name: staging
      url: https://10.0.0.5:9443
      user: viewer@example.com

Keep the file readable by you alone (chmod 600) when it holds a password.`,
	}
}

// exitCodesTopic is "cnmctl help exit-codes".
func exitCodesTopic() *cobra.Command {
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "What cnmctl's exit status means",
		Long: fmt.Sprintf(`cnmctl exits with:

  %d  done: the request succeeded; a followed action completed
  %d  error: the cluster refused the request (an HTTP error), or no node answered
  %d  usage: the command line or the config file is wrong, or no password is set;
     nothing was sent
  %d  the followed action ended failed, aborted or cancelled`, exitOK, exitError, exitUsage, exitActionFailed),
	}
}
