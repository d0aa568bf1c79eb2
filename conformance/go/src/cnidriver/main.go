// Command cnidriver drives CNI plugins through libcni, the library that
// container runtimes (containerd, CRI-O, podman) embed. It keeps upstream
// cnitool's interface and environment variables and adds a few things a
// conformance harness needs:
//
//	cnidriver add|check|del NETWORK NETNS_PATH
//	cnidriver version PLUGIN_TYPE
//	cnidriver validate NETWORK
//
// Environment (as cnitool): NETCONFPATH (config dir, default /etc/cni/net.d),
// CNI_PATH (plugin dirs), CNI_IFNAME (default eth0), CNI_ARGS ("K=V;K=V"),
// CAP_ARGS (JSON object of capability arguments). Additions: CNI_CACHE_DIR
// (libcni's cache dir instead of /var/lib/cni) and CNI_CONTAINERID (instead
// of cnitool's hash of the netns path).
//
// Output: "add" prints the result libcni returns (the last plugin's result,
// in its own version). Any failure prints one JSON error object on stdout,
// {"code", "msg", "details"} with the plugin's code when libcni returned a
// *types.Error and {"code": 0, "msg"} otherwise, repeats libcni's full error
// text on stderr (as cnitool would print it) and exits 1.
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

const defaultNetDir = "/etc/cni/net.d"

// parseArgs splits CNI_ARGS into pairs exactly as cnitool does: every
// ';'-separated item must be one non-empty key and one non-empty value.
func parseArgs(args string) ([][2]string, error) {
	var result [][2]string
	for _, pair := range strings.Split(args, ";") {
		kv := strings.Split(pair, "=")
		if len(kv) != 2 || kv[0] == "" || kv[1] == "" {
			return nil, fmt.Errorf("invalid CNI_ARGS pair %q", pair)
		}
		result = append(result, [2]string{kv[0], kv[1]})
	}
	return result, nil
}

// emit prints v as indented JSON on stdout.
func emit(v interface{}) {
	out, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

// fail reports err as a CNI error object on stdout and exits 1. A
// *types.Error anywhere in the wrap chain keeps its code, msg and details
// (libcni wraps plugin errors in list context, e.g. "plugin type=... failed
// (add): ..."); that context goes to stderr with the full error text.
func fail(err error) {
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		emit(map[string]interface{}{"code": cniErr.Code, "msg": cniErr.Msg, "details": cniErr.Details})
	} else {
		emit(map[string]interface{}{"code": 0, "msg": err.Error()})
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func usage() {
	exe := filepath.Base(os.Args[0])
	fmt.Fprintf(os.Stderr, "usage: %s add|check|del NETWORK NETNS_PATH\n", exe)
	fmt.Fprintf(os.Stderr, "       %s version PLUGIN_TYPE\n", exe)
	fmt.Fprintf(os.Stderr, "       %s validate NETWORK\n", exe)
	os.Exit(2)
}

// loadList finds the network list called name in NETCONFPATH the way
// cnitool does: .conflist files first, then a .conf/.json file of that name
// upconverted to a one-plugin list (libcni.LoadConfList does both).
func loadList(name string) *libcni.NetworkConfigList {
	netdir := os.Getenv("NETCONFPATH")
	if netdir == "" {
		netdir = defaultNetDir
	}
	list, err := libcni.LoadConfList(netdir, name)
	if err != nil {
		fail(err)
	}
	return list
}

// runtimeConf builds the per-invocation arguments from the environment.
func runtimeConf(netns string) *libcni.RuntimeConf {
	var capArgs map[string]interface{}
	if v := os.Getenv("CAP_ARGS"); v != "" {
		if err := json.Unmarshal([]byte(v), &capArgs); err != nil {
			fail(fmt.Errorf("CAP_ARGS: %w", err))
		}
	}
	var cniArgs [][2]string
	if v := os.Getenv("CNI_ARGS"); v != "" {
		var err error
		if cniArgs, err = parseArgs(v); err != nil {
			fail(err)
		}
	}
	ifName, ok := os.LookupEnv("CNI_IFNAME")
	if !ok {
		ifName = "eth0"
	}
	netns, err := filepath.Abs(netns)
	if err != nil {
		fail(err)
	}
	containerID := os.Getenv("CNI_CONTAINERID")
	if containerID == "" {
		// cnitool's derivation: a hash of the (absolute) netns path.
		s := sha512.Sum512([]byte(netns))
		containerID = fmt.Sprintf("cnitool-%x", s[:10])
	}
	return &libcni.RuntimeConf{
		ContainerID:    containerID,
		NetNS:          netns,
		IfName:         ifName,
		Args:           cniArgs,
		CapabilityArgs: capArgs,
	}
}

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	ctx := context.Background()
	// An empty CNI_CACHE_DIR makes libcni fall back to /var/lib/cni.
	cninet := libcni.NewCNIConfigWithCacheDir(
		filepath.SplitList(os.Getenv("CNI_PATH")), os.Getenv("CNI_CACHE_DIR"), nil)

	switch cmd := os.Args[1]; cmd {
	case "version":
		// libcni runs the plugin with CNI_COMMAND=VERSION and decodes it.
		info, err := cninet.GetVersionInfo(ctx, os.Args[2])
		if err != nil {
			fail(err)
		}
		var doc map[string]interface{}
		buf := &strings.Builder{}
		if err := info.Encode(buf); err != nil {
			fail(err)
		}
		if err := json.Unmarshal([]byte(buf.String()), &doc); err != nil {
			fail(err)
		}
		emit(doc)
	case "validate":
		// ValidateNetworkList checks every plugin exists and supports the
		// list's cniVersion; it returns the enabled capabilities.
		list := loadList(os.Args[2])
		caps, err := cninet.ValidateNetworkList(ctx, list)
		if err != nil {
			fail(err)
		}
		sort.Strings(caps)
		plugins := []map[string]interface{}{}
		for _, p := range list.Plugins {
			info, err := cninet.GetVersionInfo(ctx, p.Network.Type)
			if err != nil {
				fail(err)
			}
			plugins = append(plugins, map[string]interface{}{
				"type": p.Network.Type, "supportedVersions": info.SupportedVersions()})
		}
		emit(map[string]interface{}{"cniVersion": list.CNIVersion, "capabilities": caps, "plugins": plugins})
	case "add", "check", "del":
		if len(os.Args) < 4 {
			usage()
		}
		list := loadList(os.Args[2])
		rt := runtimeConf(os.Args[3])
		switch cmd {
		case "add":
			result, err := cninet.AddNetworkList(ctx, list, rt)
			if err != nil {
				fail(err)
			}
			if err := result.Print(); err != nil {
				fail(err)
			}
		case "check":
			if err := cninet.CheckNetworkList(ctx, list, rt); err != nil {
				fail(err)
			}
		case "del":
			if err := cninet.DelNetworkList(ctx, list, rt); err != nil {
				fail(err)
			}
		}
	default:
		usage()
	}
}
