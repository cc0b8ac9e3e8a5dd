package runtime

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestContractEnv(t *testing.T) {
	t.Setenv("USHER_SECRET_CANARY", "do-not-leak")
	spec := InstanceSpec{
		Env: []EnvVar{
			{"FOO", "bar"},
			{"HOME", "/home/app"},
			{"SHARED", "user"},
		},
		Service:       "svc",
		Revision:      "svc-00002-xyz",
		Configuration: "svc",
		ExtraEnv: []EnvVar{
			{"GCE_METADATA_HOST", "127.0.0.1:9999"},
			{"SHARED", "usher"},
		},
	}
	got := ContractEnv(spec, 8080)
	want := []string{
		"PATH=" + BasePath,
		"HOME=/home/app",
		"FOO=bar",
		"SHARED=usher",
		"PORT=8080",
		"K_SERVICE=svc",
		"K_REVISION=svc-00002-xyz",
		"K_CONFIGURATION=svc",
		"GCE_METADATA_HOST=127.0.0.1:9999",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ContractEnv =\n%q\nwant\n%q", got, want)
	}
	for _, kv := range got {
		if strings.Contains(kv, "do-not-leak") {
			t.Errorf("parent env leaked: %q", kv)
		}
	}
	if len(os.Environ()) == 0 {
		t.Fatal("test needs a parent environment")
	}

	// ExtraEnv wins even over the contract variables.
	got = ContractEnv(InstanceSpec{ExtraEnv: []EnvVar{{"PORT", "1"}}}, 8080)
	if !slices.Contains(got, "PORT=1") || slices.Contains(got, "PORT=8080") {
		t.Errorf("ExtraEnv PORT not applied: %q", got)
	}
}

func TestValidateEnv(t *testing.T) {
	if err := ValidateEnv(nil); err != nil {
		t.Errorf("ValidateEnv(nil) = %v", err)
	}
	ok := []EnvVar{{"FOO", "bar"}, {"_x", ""}, {"my-var.1", "v"}, {"PATH", "/bin"}, {"K_OTHER", "1"}}
	if err := ValidateEnv(ok); err != nil {
		t.Errorf("ValidateEnv(%v) = %v", ok, err)
	}
	for _, name := range []string{"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"} {
		err := ValidateEnv([]EnvVar{{"FOO", "1"}, {name, "x"}})
		if !errors.Is(err, ErrReservedEnv) || !strings.Contains(err.Error(), name) {
			t.Errorf("ValidateEnv(%s) = %v, want ErrReservedEnv naming it", name, err)
		}
	}
	for _, tc := range []struct {
		env  []EnvVar
		want string
	}{
		{[]EnvVar{{"", "x"}}, "name is empty"},
		{[]EnvVar{{"A=B", "x"}}, "invalid name"},
		{[]EnvVar{{"1ABC", "x"}}, "invalid name"},
		{[]EnvVar{{"A B", "x"}}, "invalid name"},
		{[]EnvVar{{"A", "x"}, {"A", "y"}}, "set more than once"},
		{[]EnvVar{{"A", "x\x00y"}}, "NUL"},
	} {
		err := ValidateEnv(tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateEnv(%q) = %v, want error containing %q", tc.env, err, tc.want)
		}
		if errors.Is(err, ErrReservedEnv) {
			t.Errorf("ValidateEnv(%q) = %v wraps ErrReservedEnv", tc.env, err)
		}
	}
	// All problems are reported.
	err := ValidateEnv([]EnvVar{{"PORT", "1"}, {"A=B", "2"}})
	if !errors.Is(err, ErrReservedEnv) || !strings.Contains(err.Error(), "invalid name") {
		t.Errorf("ValidateEnv with two problems = %v", err)
	}
}

func TestWithDefaults(t *testing.T) {
	s := InstanceSpec{}.WithDefaults()
	if s.StartupTimeout != DefaultStartupTimeout || s.StopGrace != DefaultStopGrace {
		t.Errorf("WithDefaults = %v, %v", s.StartupTimeout, s.StopGrace)
	}
	s = InstanceSpec{StartupTimeout: time.Second, StopGrace: time.Millisecond}.WithDefaults()
	if s.StartupTimeout != time.Second || s.StopGrace != time.Millisecond {
		t.Errorf("WithDefaults overrode set values: %v, %v", s.StartupTimeout, s.StopGrace)
	}
}

func TestExitError(t *testing.T) {
	for _, tc := range []struct {
		e    ExitError
		want string
	}{
		{ExitError{Code: 3}, "exit status 3"},
		{ExitError{Code: -1, Signal: "killed"}, "signal: killed"},
		{ExitError{Code: 0, Stopped: true}, "exit status 0 (stopped)"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v.Error() = %q, want %q", tc.e, got, tc.want)
		}
		var err error = &tc.e
		if errors.Is(err, ErrStopped) != tc.e.Stopped {
			t.Errorf("errors.Is(%+v, ErrStopped) = %v", tc.e, !tc.e.Stopped)
		}
	}
}
