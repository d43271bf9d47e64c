package reliability

import (
	"fmt"
	"os"
	"testing"
)

// The torture and crash tests re-execute the test binary as worker
// processes: envChild names the role, envConfig carries its JSON config.
const (
	envChild  = "LOCKMGR_RELIABILITY_CHILD"
	envConfig = "LOCKMGR_RELIABILITY_CONFIG"
)

// childRoles maps a role to the function a worker process runs; its
// return value is the process's exit code.
var childRoles = map[string]func(config string) int{
	"torture":   runTortureChild,
	"crash":     runCrashChild,
	"shutdown":  runShutdownChild,
	"election":  runElectionChild,
	"semaphore": runSemaphoreChild,
	"guard":     runGuardChild,
	"replica":   runReplicaChild,
}

func TestMain(m *testing.M) {
	if role := os.Getenv(envChild); role != "" {
		run, ok := childRoles[role]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
			os.Exit(2)
		}
		os.Exit(run(os.Getenv(envConfig)))
	}
	os.Exit(m.Run())
}
