package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrNoRuntime is wrapped by the errors of ByImage when no runtime is
// available for an image (for example no Docker engine is reachable).
var ErrNoRuntime = errors.New("no runtime available for this image")

// ByImage is the Runtime Usher runs instances with: it dispatches on the
// image reference. file:// images run on Process; any other reference runs
// on Docker. Docker is nil when no Docker engine could be reached, and
// DockerErr then says why; such images fail to start with an error naming
// the problem, while file:// images keep working.
type ByImage struct {
	Process   Runtime
	Docker    Runtime
	DockerErr error // why Docker is nil
}

var _ Runtime = ByImage{}

// IsFileImage tells whether image is for the process runtime (file://).
func IsFileImage(image string) bool { return strings.HasPrefix(image, "file://") }

// Check tells, without starting anything, whether an instance of image could
// be started: a non-nil error (wrapping ErrNoRuntime) names the missing
// runtime and why it is missing. Deploy may call it to fail early.
func (b ByImage) Check(image string) error {
	_, err := b.pick(image)
	return err
}

// Start implements Runtime.
func (b ByImage) Start(ctx context.Context, spec InstanceSpec) (Instance, error) {
	rt, err := b.pick(spec.Image)
	if err != nil {
		return nil, err
	}
	return rt.Start(ctx, spec)
}

func (b ByImage) pick(image string) (Runtime, error) {
	switch {
	case image == "":
		return nil, errors.New("no image given")
	case IsFileImage(image):
		if b.Process == nil {
			return nil, &noRuntimeError{msg: fmt.Sprintf("image %q needs the process runtime, which is not configured", image)}
		}
		return b.Process, nil
	case b.Docker == nil:
		why := b.DockerErr
		if why == nil {
			why = errors.New("the Docker runtime is not configured")
		}
		return nil, &noRuntimeError{
			msg:   fmt.Sprintf("image %q needs the Docker runtime, but no Docker engine is reachable: %v", image, why),
			cause: why,
		}
	default:
		return b.Docker, nil
	}
}

// noRuntimeError matches ErrNoRuntime and its cause with errors.Is/As.
type noRuntimeError struct {
	msg   string
	cause error
}

func (e *noRuntimeError) Error() string { return e.msg }

func (e *noRuntimeError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrNoRuntime}
	}
	return []error{ErrNoRuntime, e.cause}
}
