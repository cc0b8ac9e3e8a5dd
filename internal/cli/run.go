package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/ratelimit"
)

func newRunCmd(g *globals) *cobra.Command {
	run := &cobra.Command{Use: "run", Short: "Manage Cloud Run services"}
	services := &cobra.Command{Use: "services", Short: "Manage services"}
	services.AddCommand(
		newDeployCmd(g, "update", false),
		newServicesListCmd(g),
		newServicesDescribeCmd(g),
		newServicesDeleteCmd(g),
		newPolicyBindingCmd(g, "add-iam-policy-binding", true, servicePolicyPath),
		newPolicyBindingCmd(g, "remove-iam-policy-binding", false, servicePolicyPath),
		newGetPolicyCmd(g, servicePolicyPath),
		newSetPolicyCmd(g, servicePolicyPath),
		newUpdateTrafficCmd(g),
		newServiceLogsCmd(g),
		newServiceMetricsCmd(g),
	)
	revisions := &cobra.Command{Use: "revisions", Short: "Manage revisions"}
	revisions.AddCommand(newRevisionsListCmd(g), newRevisionsDescribeCmd(g), newRevisionsDeleteCmd(g))
	run.AddCommand(newDeployCmd(g, "deploy", true), services, revisions)
	run.AddCommand(newJobsCmd(g)) // jobs.go
	return run
}

func servicePolicyPath(cfg client.Config, name string) (string, string) {
	return client.ServicePath(cfg.Project, cfg.Region, name), "service [" + name + "]"
}

// deployFlags are gcloud run deploy's flags that Usher implements.
type deployFlags struct {
	image             string
	allowUnauth       bool
	noAllowUnauth     bool
	serviceAccount    string
	setEnv            map[string]string
	updateEnv         map[string]string
	removeEnv         []string
	clearEnv          bool
	command           []string
	args              []string
	concurrency       int
	minInstances      int
	maxInstances      int
	invokerIAMCheck   bool
	noInvokerIAMCheck bool
	iap, noIAP        bool
	async             bool
	noTraffic         bool
	tag               string
	cpu, memory       string
	timeout           string
	useHTTP2          bool
	noUseHTTP2        bool
	source            string
	anonymousLimit    string
	ingress           string
	defaultURL        bool
	noDefaultURL      bool
	addVolumes        []string
	removeVolumes     []string
	clearVolumes      bool
	addMounts         []string
	removeMounts      []string
	clearMounts       bool
	startupProbe      string
	livenessProbe     string
	setSecrets        map[string]string
	updateSecrets     map[string]string
	removeSecrets     []string
	clearSecrets      bool
}

func newDeployCmd(g *globals, use string, create bool) *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   use + " NAME",
		Short: "Deploy a new revision of a service (creating it if needed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return deploy(cmd, g, args[0], &f, create)
		},
	}
	if !create {
		cmd.Short = "Change a service's configuration (a new revision)"
	}
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "file:///ABS/PATH of an executable (process runtime) or a container image")
	fl.StringVar(&f.source, "source", "", "build this directory and deploy the result: a Dockerfile (Docker engine) or a Go main package (process runtime)")
	if create {
		fl.BoolVar(&f.allowUnauth, "allow-unauthenticated", false, "grant roles/run.invoker to allUsers: anyone on the network may call the service")
		fl.BoolVar(&f.noAllowUnauth, "no-allow-unauthenticated", false, "remove an allUsers invoker grant: require authentication")
	}
	fl.StringVar(&f.serviceAccount, "service-account", "", "runtime service account email")
	fl.StringToStringVar(&f.setEnv, "set-env-vars", nil, "replace all environment variables: KEY=VALUE,...")
	fl.StringToStringVar(&f.updateEnv, "update-env-vars", nil, "add or change environment variables: KEY=VALUE,...")
	fl.StringSliceVar(&f.removeEnv, "remove-env-vars", nil, "remove environment variables: KEY,...")
	fl.BoolVar(&f.clearEnv, "clear-env-vars", false, "remove all environment variables")
	fl.StringSliceVar(&f.command, "command", nil, "entrypoint (comma-separated)")
	fl.StringSliceVar(&f.args, "args", nil, "arguments (comma-separated)")
	fl.IntVar(&f.concurrency, "concurrency", -1, "maximum concurrent requests per instance (default 80)")
	fl.BoolVar(&f.useHTTP2, "use-http2", false, "speak HTTP/2 without TLS (h2c) to instances, as gRPC services need (port name h2c)")
	fl.BoolVar(&f.noUseHTTP2, "no-use-http2", false, "speak HTTP/1.1 to instances (port name http1)")
	fl.StringVar(&f.timeout, "timeout", "", "request timeout: seconds (300) or a duration (5m), at most 1h; the gateway answers 504 after it")
	fl.IntVar(&f.minInstances, "min-instances", -1, "minimum instances")
	fl.IntVar(&f.maxInstances, "max-instances", -1, "maximum instances")
	fl.BoolVar(&f.invokerIAMCheck, "invoker-iam-check", false, "require IAM invoker permission (the default)")
	fl.BoolVar(&f.noInvokerIAMCheck, "no-invoker-iam-check", false, "disable the invoker IAM check: the service is public")
	fl.BoolVar(&f.iap, "iap", false, "put the service behind the identity-aware proxy: people sign in with a browser and need roles/iap.httpsResourceAccessor")
	fl.BoolVar(&f.noIAP, "no-iap", false, "take the service out from behind the identity-aware proxy")
	fl.StringVar(&f.anonymousLimit, "anonymous-rate-limit", "", "hold anonymous callers of the (public) service to RPS[,burst=N][,total=RPS][,total-burst=N] per client address; \"off\" removes the limit")
	fl.StringVar(&f.ingress, "ingress", "", "where requests may come from: all (the default), internal (Usher's instances and usher serve --internal-cidrs) or internal-and-cloud-load-balancing (also usher serve --trusted-proxies); others get 404")
	fl.BoolVar(&f.defaultURL, "default-url", false, "answer on the service's URL (the default)")
	fl.BoolVar(&f.noDefaultURL, "no-default-url", false, "answer on none of the service's URLs (its tags' included): every request gets 404")
	fl.StringArrayVar(&f.addVolumes, "add-volume", nil, "add an in-memory volume: name=NAME,type=in-memory[,size-limit=QUANTITY] (repeatable)")
	fl.StringSliceVar(&f.removeVolumes, "remove-volume", nil, "remove volumes by name: NAME,...")
	fl.BoolVar(&f.clearVolumes, "clear-volumes", false, "remove every volume")
	fl.StringArrayVar(&f.addMounts, "add-volume-mount", nil, "mount a volume: volume=NAME,mount-path=/PATH (repeatable)")
	fl.StringSliceVar(&f.removeMounts, "remove-volume-mount", nil, "remove volume mounts by mount path: /PATH,...")
	fl.BoolVar(&f.clearMounts, "clear-volume-mounts", false, "remove every volume mount")
	fl.StringToStringVar(&f.setSecrets, "set-secrets", nil, "replace every secret env var and file: ENV=SECRET:VERSION or /DIR/FILE=SECRET:VERSION,... (VERSION a number or latest; the runtime account needs roles/secretmanager.secretAccessor)")
	fl.StringToStringVar(&f.updateSecrets, "update-secrets", nil, "add or change secret env vars and files, as --set-secrets")
	fl.StringSliceVar(&f.removeSecrets, "remove-secrets", nil, "remove secret env vars or files: ENV or /DIR/FILE,...")
	fl.BoolVar(&f.clearSecrets, "clear-secrets", false, "remove every secret env var and file")
	fl.StringVar(&f.startupProbe, "startup-probe", "", "startup probe as KEY=VALUE,...: tcpSocket.port, httpGet.path, httpGet.port, initialDelaySeconds, timeoutSeconds, periodSeconds, failureThreshold; \"\" removes it")
	fl.StringVar(&f.livenessProbe, "liveness-probe", "", "liveness probe (an instance failing it is restarted), keys as --startup-probe; \"\" removes it")
	fl.BoolVar(&f.async, "async", false, "return without waiting for the revision to be ready")
	fl.StringVar(&f.cpu, "cpu", "", "CPU limit per instance, e.g. 1, 0.5, 500m (container images)")
	fl.StringVar(&f.memory, "memory", "", "memory limit per instance, e.g. 512Mi, 1Gi (container images)")
	fl.BoolVar(&f.noTraffic, "no-traffic", false, "deploy the new revision without sending it traffic")
	fl.StringVar(&f.tag, "tag", "", "give the new revision a tag URL (TAG---SERVICE-…)")
	return cmd
}

func deploy(cmd *cobra.Command, g *globals, name string, f *deployFlags, create bool) error {
	ctx := cmd.Context()
	if strings.HasPrefix(f.image, "/") {
		return fmt.Errorf("--image=%s is a path, not an image: to run a host executable pass --image=file://%s", f.image, f.image)
	}
	c, cfg, err := g.client()
	if err != nil {
		return err
	}
	if f.allowUnauth && f.noAllowUnauth {
		return fmt.Errorf("--allow-unauthenticated and --no-allow-unauthenticated are mutually exclusive")
	}
	if f.invokerIAMCheck && f.noInvokerIAMCheck {
		return fmt.Errorf("--invoker-iam-check and --no-invoker-iam-check are mutually exclusive")
	}
	if f.iap && f.noIAP {
		return fmt.Errorf("--iap and --no-iap are mutually exclusive")
	}
	if f.defaultURL && f.noDefaultURL {
		return fmt.Errorf("--default-url and --no-default-url are mutually exclusive")
	}
	switch f.ingress {
	case "", apis.IngressAll, apis.IngressInternal, apis.IngressInternalAndLB:
	default:
		return fmt.Errorf("--ingress=%s: want all, internal or internal-and-cloud-load-balancing", f.ingress)
	}
	if f.source != "" {
		if f.image != "" {
			return fmt.Errorf("--source and --image are mutually exclusive")
		}
		if f.image, err = buildFromSource(ctx, g, c, cfg.Project, cfg.Region, "services/"+name, f.source); err != nil {
			return err
		}
	}
	existing, err := c.GetService(ctx, cfg.Project, cfg.Region, name)
	exists := err == nil
	if err != nil && !client.IsStatus(err, "NOT_FOUND") {
		return err
	}
	if !exists && !create {
		return fmt.Errorf("service [%s] does not exist in project [%s] region [%s]", name, cfg.Project, cfg.Region)
	}
	var s apis.Service
	if exists {
		s = *existing
		s.Status = apis.ServiceStatus{}
		s.Spec.Template.Metadata.Name = ""
	} else {
		if f.image == "" {
			return fmt.Errorf("--image is required to create service [%s]", name)
		}
		s = apis.Service{Metadata: apis.ObjectMeta{Name: name}, Spec: apis.ServiceSpec{Template: apis.RevisionTemplate{Spec: apis.RevisionSpec{Containers: []apis.Container{{}}}}}}
	}
	if err := applyDeployFlags(cmd, &s, f); err != nil {
		return err
	}
	if f.noTraffic {
		if !exists {
			return fmt.Errorf("--no-traffic not supported when creating a new service")
		}
		s.Spec.Traffic = pinTraffic(existing)
	}
	if f.tag != "" {
		if !exists {
			s.Metadata.Generation = 0
		}
		s.Spec.Template.Metadata.Name = nextRevisionName(&s)
		s.Spec.Traffic = append(s.Spec.Traffic, apis.TrafficTarget{RevisionName: s.Spec.Template.Metadata.Name, Tag: f.tag})
		if len(s.Spec.Traffic) == 1 {
			latest := true
			s.Spec.Traffic = append(s.Spec.Traffic, apis.TrafficTarget{LatestRevision: &latest, Percent: 100})
		}
	}
	fmt.Fprintf(g.stderr, "Deploying container to Cloud Run service [%s] in project [%s] region [%s]\n", name, cfg.Project, cfg.Region)
	if exists {
		_, err = c.ReplaceService(ctx, cfg.Project, cfg.Region, &s)
	} else {
		_, err = c.CreateService(ctx, cfg.Project, cfg.Region, &s)
	}
	if err != nil {
		return err
	}
	path := client.ServicePath(cfg.Project, cfg.Region, name)
	switch {
	case f.allowUnauth:
		if _, err := c.ModifyIamPolicy(ctx, path, func(p *iam.Policy) (bool, error) {
			return p.AddBinding("roles/run.invoker", "allUsers", nil), nil
		}); err != nil {
			return fmt.Errorf("the service was deployed, but granting allUsers failed: %w", err)
		}
	case f.noAllowUnauth:
		if _, err := c.ModifyIamPolicy(ctx, path, func(p *iam.Policy) (bool, error) {
			return p.RemoveBinding("roles/run.invoker", "allUsers", nil, true), nil
		}); err != nil {
			return fmt.Errorf("the service was deployed, but removing allUsers failed: %w", err)
		}
	}
	if f.iap || f.noIAP {
		// As gcloud does: requests IAP lets through are invoked as its
		// service agent, which needs the invoker role (and loses it with
		// --no-iap).
		if _, err := c.ModifyIamPolicy(ctx, path, func(p *iam.Policy) (bool, error) {
			if f.iap {
				return p.AddBinding("roles/run.invoker", apis.IAPServiceAgent(cfg.Project), nil), nil
			}
			return p.RemoveBinding("roles/run.invoker", apis.IAPServiceAgent(cfg.Project), nil, true), nil
		}); err != nil {
			return fmt.Errorf("the service was deployed, but changing the IAP service agent's invoker role failed: %w", err)
		}
	}
	if f.async {
		fmt.Fprintf(g.stderr, "Service [%s] is deploying asynchronously.\n", name)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ready, err := c.WaitReady(ctx, cfg.Project, cfg.Region, name)
	if err != nil {
		return fmt.Errorf("waiting for service [%s]: %w", name, err)
	}
	if !ready.Ready() {
		for _, cond := range ready.Status.Conditions {
			if cond.Type == apis.ConditionReady {
				return fmt.Errorf("deployment failed: %s", cond.Message)
			}
		}
	}
	if g.format != "" {
		return g.print(ready, nil)
	}
	served := int64(0)
	for _, t := range ready.Status.Traffic {
		if t.RevisionName == ready.Status.LatestReadyRevisionName {
			served += t.Percent
		}
	}
	fmt.Fprintf(g.stderr, "Service [%s] revision [%s] has been deployed and is serving %d percent of traffic.\n", name, ready.Status.LatestReadyRevisionName, served)
	if ready.Status.URL != "" { // none with --no-default-url
		fmt.Fprintf(g.stdout, "Service URL: %s\n", ready.Status.URL)
	}
	for _, t := range ready.Status.Traffic {
		if t.Tag != "" && t.RevisionName == ready.Status.LatestReadyRevisionName {
			fmt.Fprintf(g.stdout, "The revision can be reached directly at %s\n", t.URL)
		}
	}
	return nil
}

func applyDeployFlags(cmd *cobra.Command, s *apis.Service, f *deployFlags) error {
	tmpl := &s.Spec.Template
	ctr := &tmpl.Spec.Containers[0]
	changed := cmd.Flags().Changed
	if f.image != "" {
		ctr.Image = f.image
	}
	if changed("service-account") {
		tmpl.Spec.ServiceAccountName = f.serviceAccount
	}
	if changed("command") {
		ctr.Command = f.command
	}
	if changed("args") {
		ctr.Args = f.args
	}
	env := ctr.Env
	if f.clearEnv || changed("set-env-vars") {
		env = nil
	}
	for k, v := range f.setEnv {
		env = setEnv(env, k, v)
	}
	for k, v := range f.updateEnv {
		env = setEnv(env, k, v)
	}
	for _, k := range f.removeEnv {
		env = removeEnv(env, k)
	}
	ctr.Env = env
	if f.cpu != "" || f.memory != "" {
		if ctr.Resources == nil {
			ctr.Resources = &apis.Resources{}
		}
		if ctr.Resources.Limits == nil {
			ctr.Resources.Limits = map[string]string{}
		}
		if f.cpu != "" {
			ctr.Resources.Limits["cpu"] = f.cpu
		}
		if f.memory != "" {
			ctr.Resources.Limits["memory"] = f.memory
		}
	}
	if f.useHTTP2 || f.noUseHTTP2 {
		name := "http1"
		if f.useHTTP2 {
			name = apis.PortNameH2C
		}
		port := int32(apis.DefaultContainerPort)
		if len(ctr.Ports) > 0 && ctr.Ports[0].ContainerPort != 0 {
			port = ctr.Ports[0].ContainerPort
		}
		ctr.Ports = []apis.ContainerPort{{Name: name, ContainerPort: port}}
	}
	if f.timeout != "" {
		secs, err := parseTimeout(f.timeout)
		if err != nil {
			return err
		}
		tmpl.Spec.TimeoutSeconds = secs
	}
	if f.concurrency >= 0 {
		cc := int64(f.concurrency)
		tmpl.Spec.ContainerConcurrency = &cc
	}
	if tmpl.Metadata.Annotations == nil {
		tmpl.Metadata.Annotations = map[string]string{}
	}
	if f.minInstances >= 0 {
		tmpl.Metadata.Annotations[apis.AnnotationMinScale] = strconv.Itoa(f.minInstances)
	}
	if f.maxInstances >= 0 {
		tmpl.Metadata.Annotations[apis.AnnotationMaxScale] = strconv.Itoa(f.maxInstances)
	}
	if f.noInvokerIAMCheck || f.invokerIAMCheck {
		if s.Metadata.Annotations == nil {
			s.Metadata.Annotations = map[string]string{}
		}
		s.Metadata.Annotations[apis.AnnotationInvokerIAMDisabled] = strconv.FormatBool(f.noInvokerIAMCheck)
	}
	switch { // as gcloud: --iap sets the annotation, --no-iap removes it
	case f.iap:
		if s.Metadata.Annotations == nil {
			s.Metadata.Annotations = map[string]string{}
		}
		s.Metadata.Annotations[apis.AnnotationIAPEnabled] = "true"
	case f.noIAP:
		delete(s.Metadata.Annotations, apis.AnnotationIAPEnabled)
	}
	if err := applyVolumeFlags(&tmpl.Spec, f); err != nil {
		return err
	}
	if err := applySecretFlags(&tmpl.Spec, f, changed("set-secrets")); err != nil { // secrets.go
		return err
	}
	for _, pf := range []struct {
		name  string
		value string
		dst   **apis.Probe
	}{{"startup-probe", f.startupProbe, &ctr.StartupProbe}, {"liveness-probe", f.livenessProbe, &ctr.LivenessProbe}} {
		if !changed(pf.name) {
			continue
		}
		p, err := parseProbeFlag("--"+pf.name, pf.value)
		if err != nil {
			return err
		}
		*pf.dst = p
	}
	if f.ingress != "" {
		if s.Metadata.Annotations == nil {
			s.Metadata.Annotations = map[string]string{}
		}
		s.Metadata.Annotations[apis.AnnotationIngress] = f.ingress
	}
	if f.defaultURL || f.noDefaultURL { // as gcloud: the annotation says whether it is disabled
		if s.Metadata.Annotations == nil {
			s.Metadata.Annotations = map[string]string{}
		}
		s.Metadata.Annotations[apis.AnnotationDefaultURLDisabled] = strconv.FormatBool(f.noDefaultURL)
	}
	switch f.anonymousLimit {
	case "":
	case "off":
		delete(s.Metadata.Annotations, apis.AnnotationAnonymousRateLimit)
	default:
		l, err := ratelimit.Parse(f.anonymousLimit)
		if err != nil {
			return fmt.Errorf("--anonymous-rate-limit=%s: %v", f.anonymousLimit, err)
		}
		if s.Metadata.Annotations == nil {
			s.Metadata.Annotations = map[string]string{}
		}
		s.Metadata.Annotations[apis.AnnotationAnonymousRateLimit] = l.String()
	}
	return nil
}

func setEnv(env []apis.EnvVar, k, v string) []apis.EnvVar {
	return setEnvVar(env, apis.EnvVar{Name: k, Value: v}) // a literal replaces a secret reference
}

// setEnvVar replaces the variable named e.Name, or adds e.
func setEnvVar(env []apis.EnvVar, e apis.EnvVar) []apis.EnvVar {
	for i := range env {
		if env[i].Name == e.Name {
			env[i] = e
			return env
		}
	}
	return append(env, e)
}

func removeEnv(env []apis.EnvVar, k string) []apis.EnvVar {
	out := env[:0]
	for _, e := range env {
		if e.Name != k {
			out = append(out, e)
		}
	}
	return out
}

func newServicesListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			region := "-"
			if g.region != "" {
				region = g.region
			}
			items, err := c.ListServices(cmd.Context(), cfg.Project, region)
			if err != nil {
				return err
			}
			return g.print(items, func(w io.Writer) error {
				var rows [][]string
				for _, s := range items {
					mark := "X"
					if s.Ready() {
						mark = "✔"
					}
					rows = append(rows, []string{mark, s.Metadata.Name, s.Metadata.Labels[apis.LabelLocation], s.Status.URL,
						s.Metadata.Annotations[apis.AnnotationLastModifier], s.Metadata.CreationTimestamp})
				}
				return table(w, []string{"", "SERVICE", "REGION", "URL", "LAST DEPLOYED BY", "CREATED"}, rows)
			})
		},
	}
}

func newServicesDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a service",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			s, err := c.GetService(cmd.Context(), cfg.Project, cfg.Region, args[0])
			if err != nil {
				return err
			}
			return g.print(s, nil)
		},
	}
}

func newServicesDeleteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a service, its revisions and its IAM policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			if err := g.confirm(fmt.Sprintf("Service [%s] will be deleted.", args[0])); err != nil {
				return err
			}
			if err := c.DeleteService(cmd.Context(), cfg.Project, cfg.Region, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Deleted service [%s].\n", args[0])
			return nil
		},
	}
	return cmd
}

func newRevisionsListCmd(g *globals) *cobra.Command {
	var service string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List revisions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			items, err := c.ListRevisions(cmd.Context(), cfg.Project, cfg.Region, service)
			if err != nil {
				return err
			}
			// Newest first, as gcloud lists them.
			slices.SortStableFunc(items, func(a, b apis.Revision) int {
				if c := cmp.Compare(b.Metadata.CreationTimestamp, a.Metadata.CreationTimestamp); c != 0 {
					return c
				}
				return cmp.Compare(b.Metadata.Name, a.Metadata.Name)
			})
			return g.print(items, func(w io.Writer) error {
				var rows [][]string
				for _, r := range items {
					active := ""
					for _, cond := range r.Status.Conditions {
						if cond.Type == apis.ConditionActive && cond.Status == apis.StatusTrue {
							active = "yes"
						}
					}
					ready := "X"
					for _, cond := range r.Status.Conditions {
						if cond.Type == apis.ConditionReady && cond.Status == apis.StatusTrue {
							ready = "✔"
						}
					}
					rows = append(rows, []string{ready, r.Metadata.Name, active, r.Metadata.Labels[apis.LabelService], r.Metadata.CreationTimestamp})
				}
				return table(w, []string{"", "REVISION", "ACTIVE", "SERVICE", "DEPLOYED"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "only this service's revisions")
	return cmd
}

// policyPathFunc maps a command's NAME argument to the policy's API path and a
// label for messages.
type policyPathFunc func(cfg client.Config, name string) (path, label string)

func newPolicyBindingCmd(g *globals, use string, add bool, pathOf policyPathFunc) *cobra.Command {
	var member, role, condition string
	cmd := &cobra.Command{
		Use:   use + " NAME --member=MEMBER --role=ROLE",
		Short: "Add or remove an IAM policy binding",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if member == "" || role == "" {
				return fmt.Errorf("--member and --role are required")
			}
			if _, err := iam.ParseMember(member); err != nil {
				return err
			}
			if err := checkRole(role); err != nil { // suggest.go
				return err
			}
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			cond, allConditions, err := parseCondition(condition)
			if err != nil {
				return err
			}
			path, label := pathOf(cfg, args[0])
			found := true
			p, err := c.ModifyIamPolicy(cmd.Context(), path, func(p *iam.Policy) (bool, error) {
				if add && condition == "" && hasConditions(p) {
					return false, errConditionRequired // conditions.go
				}
				if cond != nil {
					p.Version = iam.Version3
				}
				if add {
					return p.AddBinding(role, member, cond), nil
				}
				found = p.RemoveBinding(role, member, cond, allConditions)
				return found, nil
			})
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("policy binding with the specified principal, role, and condition not found")
			}
			fmt.Fprintf(g.stderr, "Updated IAM policy for %s.\n", label)
			return g.print(p, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&member, "member", "", "allUsers, allAuthenticatedUsers, user:EMAIL, serviceAccount:EMAIL, group:EMAIL or domain:DOMAIN")
	f.StringVar(&role, "role", "", "role name, e.g. roles/run.invoker")
	f.StringVar(&condition, "condition", "", "condition: expression=EXPR,title=TITLE[,description=DESC], or None")
	return cmd
}

// parseCondition parses gcloud's --condition value. "None" means no condition;
// for removal, an absent flag matches bindings with any condition... except
// that gcloud requires it when conditions exist; Usher removes from all.
func parseCondition(s string) (*iam.Expr, bool, error) {
	switch s {
	case "":
		return nil, true, nil
	case "None", "none":
		return nil, false, nil
	}
	e := &iam.Expr{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, false, fmt.Errorf("--condition: %q is not KEY=VALUE", kv)
		}
		switch k {
		case "expression":
			e.Expression = v
		case "title":
			e.Title = v
		case "description":
			e.Description = v
		default:
			return nil, false, fmt.Errorf("--condition: unknown key %q (use expression, title, description)", k)
		}
	}
	if e.Expression == "" || e.Title == "" {
		return nil, false, fmt.Errorf("--condition needs expression= and title=")
	}
	return e, false, nil
}

func newGetPolicyCmd(g *globals, pathOf policyPathFunc) *cobra.Command {
	return &cobra.Command{
		Use:   "get-iam-policy NAME",
		Short: "Show an IAM policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			path, _ := pathOf(cfg, args[0])
			p, err := c.GetIamPolicy(cmd.Context(), path)
			if err != nil {
				return err
			}
			return g.print(p, nil)
		},
	}
}

func newSetPolicyCmd(g *globals, pathOf policyPathFunc) *cobra.Command {
	return &cobra.Command{
		Use:   "set-iam-policy NAME POLICY_FILE",
		Short: "Replace an IAM policy with one from a JSON or YAML file (compare-and-swap on its etag)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(args[1])
			if err != nil {
				return err
			}
			var p iam.Policy
			if err := yaml.UnmarshalStrict(b, &p); err != nil {
				return fmt.Errorf("%s: not a policy: %w", args[1], err)
			}
			path, label := pathOf(cfg, args[0])
			out, err := c.SetIamPolicy(cmd.Context(), path, &p)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Updated IAM policy for %s.\n", label)
			return g.print(out, nil)
		},
	}
}

// parseTimeout reads gcloud's --timeout: whole seconds, or a duration such
// as 5m or 1h.
func parseTimeout(v string) (int64, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d%time.Second != 0 {
		return 0, fmt.Errorf("--timeout %q: want whole seconds (300) or a duration (5m)", v)
	}
	return int64(d / time.Second), nil
}

// applyVolumeFlags applies gcloud's volume flags, in gcloud's order:
// clear, remove, then add (volumes first, then mounts).
func applyVolumeFlags(spec *apis.RevisionSpec, f *deployFlags) error {
	ctr := &spec.Containers[0]
	if f.clearVolumes {
		spec.Volumes = nil
	}
	if f.clearMounts {
		ctr.VolumeMounts = nil
	}
	spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v apis.Volume) bool { return slices.Contains(f.removeVolumes, v.Name) })
	ctr.VolumeMounts = slices.DeleteFunc(ctr.VolumeMounts, func(m apis.VolumeMount) bool { return slices.Contains(f.removeMounts, m.MountPath) })
	for _, a := range f.addVolumes {
		kv, err := keyValues("--add-volume", a, "name", "type", "size-limit")
		if err != nil {
			return err
		}
		if kv["name"] == "" || kv["type"] == "" {
			return fmt.Errorf("--add-volume=%s: name and type are required", a)
		}
		if kv["type"] != "in-memory" {
			return fmt.Errorf("--add-volume=%s: type %q is not supported by Usher: only in-memory", a, kv["type"])
		}
		v := apis.Volume{Name: kv["name"], EmptyDir: &apis.EmptyDirVolumeSource{Medium: apis.MediumMemory, SizeLimit: kv["size-limit"]}}
		spec.Volumes = slices.DeleteFunc(spec.Volumes, func(old apis.Volume) bool { return old.Name == v.Name })
		spec.Volumes = append(spec.Volumes, v)
	}
	for _, a := range f.addMounts {
		kv, err := keyValues("--add-volume-mount", a, "volume", "mount-path")
		if err != nil {
			return err
		}
		if kv["volume"] == "" || kv["mount-path"] == "" {
			return fmt.Errorf("--add-volume-mount=%s: volume and mount-path are required", a)
		}
		m := apis.VolumeMount{Name: kv["volume"], MountPath: kv["mount-path"]}
		ctr.VolumeMounts = slices.DeleteFunc(ctr.VolumeMounts, func(old apis.VolumeMount) bool { return old.MountPath == m.MountPath })
		ctr.VolumeMounts = append(ctr.VolumeMounts, m)
	}
	return nil
}

// keyValues parses "k=v,k=v" with only the allowed keys.
func keyValues(flag, s string, allowed ...string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("%s=%s: want %s", flag, s, strings.Join(allowed, "=…,")+"=…")
		}
		out[k] = v
	}
	return out, nil
}

// parseProbeFlag reads gcloud's --startup-probe/--liveness-probe value:
// KEY=VALUE,... naming fields of the probe (a whole new probe), or "" for
// none.
func parseProbeFlag(flag, s string) (*apis.Probe, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	p := &apis.Probe{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%s=%s: want KEY=VALUE,...", flag, s)
		}
		if k == "httpGet.path" {
			if p.HTTPGet == nil {
				p.HTTPGet = &apis.HTTPGetAction{}
			}
			p.HTTPGet.Path = v
			continue
		}
		if k == "grpc.service" {
			if p.GRPC == nil {
				p.GRPC = &apis.GRPCAction{}
			}
			p.GRPC.Service = v
			continue
		}
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s: value for key [%s] must be an integer", flag, k)
		}
		switch k {
		case "tcpSocket.port":
			p.TCPSocket = &apis.TCPSocketAction{Port: int32(n)}
		case "grpc.port":
			if p.GRPC == nil {
				p.GRPC = &apis.GRPCAction{}
			}
			p.GRPC.Port = int32(n)
		case "httpGet.port":
			if p.HTTPGet == nil {
				p.HTTPGet = &apis.HTTPGetAction{}
			}
			p.HTTPGet.Port = int32(n)
		case "initialDelaySeconds":
			p.InitialDelaySeconds = int32(n)
		case "timeoutSeconds":
			p.TimeoutSeconds = int32(n)
		case "periodSeconds":
			p.PeriodSeconds = int32(n)
		case "failureThreshold":
			p.FailureThreshold = int32(n)
		default:
			return nil, fmt.Errorf("%s: key [%s] is not supported by Usher: tcpSocket.port, httpGet.path, httpGet.port, grpc.port, grpc.service, initialDelaySeconds, timeoutSeconds, periodSeconds, failureThreshold", flag, k)
		}
	}
	return p, nil
}
