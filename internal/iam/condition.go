package iam

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
)

// Conditions (policy version 3) are CEL expressions over the attributes IAM
// defines for a request. Usher provides the ones that mean something for its
// resources:
//
//	request.time      timestamp  when the request is decided
//	resource.name     string     e.g. projects/P/locations/R/services/S
//	resource.service  string     e.g. run.googleapis.com
//	resource.type     string     e.g. run.googleapis.com/Service
//
// with CEL's standard library (startsWith, endsWith, matches, timestamp(),
// duration(), getHours("Europe/Berlin")…) and IAM's extract(). Anything else
// (resource.matchTag, request.auth.access_levels…) fails to compile, so a
// policy using it is refused when set instead of silently granting nothing.
//
// An expression is compiled once, when a policy is compiled into Grantees,
// and evaluated per decision only for principals a conditional binding names.
// Evaluation errors, a non-boolean result or running over the cost limit all
// make the binding grant nothing: conditions fail closed.

// Condition attribute names.
const (
	attrRequestTime     = "request.time"
	attrResourceName    = "resource.name"
	attrResourceService = "resource.service"
	attrResourceType    = "resource.type"
)

const (
	// maxExpressionLen bounds a condition's source.
	maxExpressionLen = 12800
	// conditionCostLimit bounds the work one evaluation may do (CEL's cost
	// units; comparisons and short string functions cost a few each).
	conditionCostLimit = 100_000
	// conditionCacheSize bounds the compiled expressions a catalogue keeps.
	conditionCacheSize = 1024
)

// conditionEnv is the CEL environment of IAM conditions. It is built once and
// never changes (cel.Env is immutable and safe for concurrent use).
var conditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable(attrRequestTime, cel.TimestampType),
		cel.Variable(attrResourceName, cel.StringType),
		cel.Variable(attrResourceService, cel.StringType),
		cel.Variable(attrResourceType, cel.StringType),
		cel.Function("extract",
			cel.MemberOverload("string_extract_string", []*cel.Type{cel.StringType, cel.StringType}, cel.StringType,
				cel.BinaryBinding(extract))),
		// Malformed literals (timestamp("soon"), bad regexes) would only
		// fail at evaluation; refuse them when the policy is set.
		cel.ASTValidators(
			cel.ValidateTimestampLiterals(),
			cel.ValidateDurationLiterals(),
			cel.ValidateRegexLiterals(),
			cel.ValidateHomogeneousAggregateLiterals(),
		),
	)
})

// condition is a compiled expression.
type condition struct {
	program cel.Program
}

// compileCondition compiles a condition's expression, returning an error fit
// for an INVALID_ARGUMENT answer when it does not compile or does not
// evaluate to a boolean.
func compileCondition(expr string) (*condition, error) {
	if len(expr) > maxExpressionLen {
		return nil, fmt.Errorf("expression is longer than %d characters", maxExpressionLen)
	}
	env, err := conditionEnv()
	if err != nil {
		return nil, fmt.Errorf("condition environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, errors.New(celIssues(iss))
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("expression must evaluate to a bool, not %s", cel.FormatCELType(ast.OutputType()))
	}
	// Refuse, when the policy is set, an expression whose worst case would
	// exceed the runtime limit: it could only ever evaluate to false.
	est, err := env.EstimateCost(ast, attributeSizes{})
	if err != nil {
		return nil, fmt.Errorf("expression: estimating its cost: %w", err)
	}
	if est.Max > conditionCostLimit {
		return nil, fmt.Errorf("expression is too expensive: its worst case costs %d units, more than the %d a condition may (simplify it, or split it over several bindings)", est.Max, conditionCostLimit)
	}
	prg, err := env.Program(ast, cel.CostLimit(conditionCostLimit))
	if err != nil {
		return nil, fmt.Errorf("expression: %w", err)
	}
	return &condition{program: prg}, nil
}

// attributeSizes bounds the string attributes a condition sees (resource
// names and types are short), so cost estimation has a finite worst case.
type attributeSizes struct{}

func (attributeSizes) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if p := n.Path(); len(p) > 0 && strings.HasPrefix(p[0], "resource.") {
		return &cost.SizeEstimate{Min: 0, Max: maxAttributeLen}
	}
	return nil
}

func (attributeSizes) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	return nil
}

// maxAttributeLen bounds resource.name, resource.service and resource.type.
const maxAttributeLen = 1024

// celIssues renders compile errors on one line each, with their position.
func celIssues(iss *cel.Issues) string {
	var parts []string
	for _, e := range iss.Errors() {
		msg := e.Message
		if loc := e.Location; loc != nil && loc.Line() > 0 {
			msg = fmt.Sprintf("line %d, column %d: %s", loc.Line(), loc.Column()+1, msg)
		}
		parts = append(parts, msg)
	}
	if len(parts) == 0 {
		return strings.Join(strings.Fields(iss.String()), " ")
	}
	return strings.Join(parts, "; ")
}

// Holds evaluates the condition for a request at now on resource r. Any
// failure is false.
func (c *condition) Holds(r *resourceAttrs, now time.Time) bool {
	out, _, err := c.program.Eval(&activation{now: now, resource: r})
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}

// resourceAttrs are the resource.* attributes of the resource decided on.
type resourceAttrs struct {
	name, service, typ string
}

// attributesOf derives resource.service and resource.type from an IAM
// resource name as Google reports them for Usher's resource kinds.
func attributesOf(name string) *resourceAttrs {
	a := &resourceAttrs{name: name}
	parts := strings.Split(name, "/")
	switch {
	case len(parts) == 6 && parts[0] == "projects" && parts[2] == "locations" && parts[4] == "services":
		a.service, a.typ = "run.googleapis.com", "run.googleapis.com/Service"
	case len(parts) == 6 && parts[0] == "projects" && parts[2] == "locations" && parts[4] == "jobs":
		a.service, a.typ = "run.googleapis.com", "run.googleapis.com/Job"
	case len(parts) == 4 && parts[0] == "projects" && parts[2] == "locations":
		a.service, a.typ = "run.googleapis.com", "run.googleapis.com/Location"
	case len(parts) == 4 && parts[0] == "projects" && parts[2] == "serviceAccounts":
		a.service, a.typ = "iam.googleapis.com", "iam.googleapis.com/ServiceAccount"
	case len(parts) == 2 && parts[0] == "projects":
		a.service, a.typ = "cloudresourcemanager.googleapis.com", "cloudresourcemanager.googleapis.com/Project"
	}
	return a
}

// activation resolves the condition attributes for one evaluation.
type activation struct {
	now      time.Time
	resource *resourceAttrs
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case attrRequestTime:
		return types.Timestamp{Time: a.now}, true
	case attrResourceName:
		return types.String(a.resource.name), true
	case attrResourceService:
		return types.String(a.resource.service), true
	case attrResourceType:
		return types.String(a.resource.typ), true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// extract is IAM's string.extract(template): the part of the string matched
// by the single {placeholder} in template, e.g.
// "projects/p/locations/r/services/s".extract("/services/{name}") == "s".
// Without a match it is the empty string.
func extract(s, tmpl ref.Val) ref.Val {
	str, ok1 := s.(types.String)
	t, ok2 := tmpl.(types.String)
	if !ok1 || !ok2 {
		return types.NewErr("extract: want string arguments")
	}
	open, end := strings.IndexByte(string(t), '{'), strings.IndexByte(string(t), '}')
	if open < 0 || end < open || strings.ContainsAny(string(t[end+1:]), "{}") {
		return types.NewErr("extract: template %q must contain exactly one {placeholder}", string(t))
	}
	prefix, suffix := string(t[:open]), string(t[end+1:])
	i := strings.Index(string(str), prefix)
	if i < 0 {
		return types.String("")
	}
	rest := string(str[i+len(prefix):])
	if suffix == "" {
		return types.String(rest)
	}
	j := strings.Index(rest, suffix)
	if j < 0 {
		return types.String("")
	}
	return types.String(rest[:j])
}

// conditionCache keeps compiled expressions of stored policies so that
// rebuilding the routing table (on every state change) does not recompile
// every condition. It is bounded: when full it starts over.
type conditionCache struct {
	mu    sync.Mutex
	byExp map[string]*condition // nil value: the expression does not compile
}

func (cc *conditionCache) get(expr string) *condition {
	if cc == nil {
		c, _ := compileCondition(expr)
		return c
	}
	cc.mu.Lock()
	c, ok := cc.byExp[expr]
	cc.mu.Unlock()
	if ok {
		return c
	}
	c, _ = compileCondition(expr)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.byExp) >= conditionCacheSize || cc.byExp == nil {
		cc.byExp = map[string]*condition{}
	}
	cc.byExp[expr] = c
	return c
}

// basicRoles cannot be granted conditionally (IAM refuses conditions on the
// basic roles Owner, Editor and Viewer).
var basicRoles = []string{"roles/owner", "roles/editor", "roles/viewer"}

// validateCondition checks a conditional binding as setIamPolicy does: not a
// basic role, and an expression that compiles to a bool.
func validateCondition(b Binding) error {
	if slices.Contains(basicRoles, b.Role) {
		return fmt.Errorf("conditions are not supported for basic role %s; grant a predefined or custom role under the condition instead", b.Role)
	}
	if _, err := compileCondition(b.Condition.Expression); err != nil {
		return fmt.Errorf("condition %q is not valid: %w", b.Condition.Title, err)
	}
	return nil
}
