// Command scale measures how Usher's writes cost with many services: for
// 1, 1,000 and 10,000 services (10 invoker bindings each, scaled to zero) it
// seeds a data directory, starts the real `usher serve`, and times
// setIamPolicy, create and delete of a service through the real HTTP API,
// the start-up until /readyz answers 200, and the server's resident memory.
//
// Seeding writes the bolt store's on-disk form (key → 8-byte revision +
// JSON) in one transaction: 30,000 writes through the API would take longer
// than the measurement and measure nothing the benchmark is about. The
// services are stored exactly as the admin core stores them (JSON of
// apis.Service and iam.Policy), already reconciled.
//
// Run by bench/scale.sh; everything listens on 127.0.0.1.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
)

const (
	project = "local-project"
	region  = "us-central1"
)

func main() {
	bin := flag.String("usher", "", "the usher binary")
	sizes := flag.String("sizes", "1,1000,10000", "numbers of services")
	writes := flag.Int("writes", 200, "setIamPolicy calls per size")
	work := flag.String("work", "", "working directory (default: a new temporary one)")
	flag.Parse()
	if *bin == "" {
		log.Fatal("scale: --usher is required")
	}
	if *work == "" {
		dir, err := os.MkdirTemp("", "usher-scale-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		*work = dir
	}
	var p99At1 time.Duration
	fmt.Printf("%-9s %-24s %-24s %-12s %-12s %-10s %-9s\n", "services", "setIamPolicy p50/p99", "p99 / p99 at 1", "create p50", "delete p50", "start-up", "RSS MB")
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			log.Fatal(err)
		}
		r, err := measure(*bin, filepath.Join(*work, f), n, *writes)
		if err != nil {
			log.Fatalf("scale: %d services: %v", n, err)
		}
		if p99At1 == 0 {
			p99At1 = r.set.p99
		}
		fmt.Printf("%-9d %-24s %-24s %-12s %-12s %-10s %-9.0f\n", n,
			fmt.Sprintf("%s / %s", ms(r.set.p50), ms(r.set.p99)),
			fmt.Sprintf("%.2f", float64(r.set.p99)/float64(p99At1)),
			ms(r.create.p50), ms(r.del.p50), ms(r.startup), r.rssMB)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

type quantiles struct{ p50, p99 time.Duration }

func quantilesOf(ds []time.Duration) quantiles {
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return quantiles{at(0.50), at(0.99)}
}

type result struct {
	set, create, del quantiles
	startup          time.Duration
	rssMB            float64
}

func measure(bin, dir string, n, writes int) (result, error) {
	var res result
	data := filepath.Join(dir, "data")
	home := filepath.Join(dir, "home")
	os.MkdirAll(home, 0o700)
	// First start makes the data directory (keys, config, project).
	srv, err := start(bin, dir, data, home)
	if err != nil {
		return res, err
	}
	srv.stop()
	if err := seed(filepath.Join(data, "usher.db"), n); err != nil {
		return res, fmt.Errorf("seeding: %w", err)
	}
	began := time.Now()
	srv, err = start(bin, dir, data, home)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	if err := srv.waitReady(60 * time.Second); err != nil {
		return res, err
	}
	res.startup = time.Since(began)
	res.rssMB = srv.rssMB()

	tok, err := srv.cli("auth", "print-access-token")
	if err != nil {
		return res, err
	}
	tok = strings.TrimSpace(tok)
	base := "http://" + srv.addr + "/v1/projects/" + project + "/locations/" + region + "/services/"
	var set []time.Duration
	for i := range writes {
		members := []string{}
		for j := range 10 {
			members = append(members, fmt.Sprintf("user:w%d-%d@example.com", i, j))
		}
		body := map[string]any{"policy": map[string]any{"bindings": []any{map[string]any{"role": "roles/run.invoker", "members": members}}}}
		d, err := call(tok, "POST", base+"s0:setIamPolicy", body)
		if err != nil {
			return res, err
		}
		set = append(set, d)
	}
	res.set = quantilesOf(set)
	// Create and delete go through the v2 API (gcloud's), which answers
	// with the stored service or operation.
	v2 := "http://" + srv.addr + "/v2/projects/" + project + "/locations/" + region + "/services"
	var create, del []time.Duration
	for i := range 20 {
		name := fmt.Sprintf("new%d", i)
		svc := map[string]any{"template": map[string]any{"containers": []any{map[string]any{"image": "file:///bin/true"}}}}
		d, err := call(tok, "POST", v2+"?serviceId="+name, svc)
		if err != nil {
			return res, fmt.Errorf("create: %w", err)
		}
		create = append(create, d)
		// The controller reconciles a new service at once; a delete racing
		// it answers 409 ABORTED ("retry"), as on Google: retry, timing the
		// call that succeeds.
		for try := 0; ; try++ {
			d, err = call(tok, "DELETE", v2+"/"+name, nil)
			if err == nil || !strings.Contains(err.Error(), "409") || try == 100 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return res, fmt.Errorf("delete: %w", err)
		}
		del = append(del, d)
	}
	res.create, res.del = quantilesOf(create), quantilesOf(del)
	return res, nil
}

func call(tok, method, url string, body any) (time.Duration, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(began)
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("%s %s: %s %s", method, url, resp.Status, b)
	}
	return d, nil
}

// seed writes n reconciled, scaled-to-zero services with a 10-binding
// policy each into the bolt store at path, in one transaction.
func seed(path string, n int) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		kv, meta := tx.Bucket([]byte("kv")), tx.Bucket([]byte("meta"))
		if kv == nil || meta == nil {
			return fmt.Errorf("%s: not an usher store", path)
		}
		rev := int64(binary.BigEndian.Uint64(meta.Get([]byte("rev"))))
		put := func(key string, v any) error {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			rev++
			return kv.Put([]byte(key), append(binary.BigEndian.AppendUint64(nil, uint64(rev)), b...))
		}
		for i := range n {
			name := fmt.Sprintf("s%d", i)
			svc := &apis.Service{
				APIVersion: "serving.knative.dev/v1", Kind: "Service",
				Metadata: apis.ObjectMeta{Name: name, Namespace: project, Generation: 1, UID: fmt.Sprintf("seed-%d", i),
					CreationTimestamp: time.Now().UTC().Format(time.RFC3339),
					Labels:            map[string]string{apis.LabelLocation: region}},
				Status: apis.ServiceStatus{ObservedGeneration: 1},
			}
			svc.Spec.Template.Spec.Containers = []apis.Container{{Image: "file:///bin/true"}}
			if err := put(state.ServiceKey(project, region, name), svc); err != nil {
				return err
			}
			pol := &iam.Policy{Version: 1}
			for j := range 10 {
				pol.Bindings = append(pol.Bindings, iam.Binding{Role: "roles/run.invoker", Members: []string{fmt.Sprintf("user:u%d-%d@example.com", i, j)}})
			}
			if err := put(state.ServicePolicyKey(project, region, name), pol); err != nil {
				return err
			}
		}
		return meta.Put([]byte("rev"), binary.BigEndian.AppendUint64(nil, uint64(rev)))
	})
}

type server struct {
	cmd              *exec.Cmd
	addr, data, home string
	bin              string
}

var servingLine = regexp.MustCompile(`msg="usher serving" addr=(\S+)`)

func start(bin, dir, data, home string) (*server, error) {
	logf, err := os.OpenFile(filepath.Join(dir, "usher.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fi, err := logf.Stat()
	if err != nil {
		return nil, err
	}
	offset := fi.Size()
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--data-dir", data)
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, data: data, home: home, bin: bin}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		b, _ := os.ReadFile(logf.Name())
		if int64(len(b)) > offset {
			if m := servingLine.FindSubmatch(b[offset:]); m != nil {
				s.addr = string(m[1])
				return s, nil
			}
		}
	}
	s.stop()
	return nil, fmt.Errorf("usher serve did not log its address; see %s", logf.Name())
}

func (s *server) waitReady(limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for ctx.Err() == nil {
		resp, err := http.Get("http://" + s.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("/readyz not 200 within %s", limit)
}

func (s *server) rssMB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

func (s *server) cli(args ...string) (string, error) {
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+s.home, "USHER_CONFIG="+filepath.Join(s.data, "config.json"))
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("usher %s: %v", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func (s *server) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}
