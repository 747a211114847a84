package main

// roomchat -h, from the command itself.

import (
	"strings"
	"testing"
)

// TestUsageNamesSubcommandAndVariables checks that -h names the token
// subcommand, every variable the server reads, and the flags.
func TestUsageNamesSubcommandAndVariables(t *testing.T) {
	out, code := runMain(t, "-h")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{"roomchat token -name NAME -room ROOM", redisURLEnv, tokenSecretEnv, apiKeyEnv, dataDirEnv, "-ipv6-prefix", "-trust-proxy", "-data"} {
		if !strings.Contains(out, want) {
			t.Errorf("-h does not name %s:\n%s", want, out)
		}
	}
}
