package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/client"
)

// ImageBuilder is the part of the Docker engine's client a Dockerfile
// build uses.
type ImageBuilder interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options client.ImageBuildOptions) (client.ImageBuildResult, error)
	Close() error
}

// dockerfileLanguage builds the directory's Dockerfile with the local
// Docker engine, tagging the image usher.local/PROJECT/KIND-NAME:BUILD so
// each revision keeps its own image. RUN steps run in the engine's build
// containers, isolated as containers are.
var dockerfileLanguage = Language{Name: "Dockerfile", detect: hasDockerfile, build: buildDockerfile}

func hasDockerfile(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "Dockerfile"))
	return err == nil && fi.Mode().IsRegular()
}

// ImageRepository is where Usher tags the images it builds.
const ImageRepository = "usher.local"

func buildDockerfile(ctx context.Context, b *Builder, s *Source, t Target, out io.Writer) (string, error) {
	if b.cfg.Docker == nil {
		return "", errors.New("no Docker engine is configured to build the Dockerfile")
	}
	engine, err := b.cfg.Docker(ctx)
	if err != nil {
		return "", fmt.Errorf("no Docker engine to build the Dockerfile: %v", err)
	}
	defer engine.Close()
	ref := strings.ToLower(fmt.Sprintf("%s/%s/%s-%s:%s", ImageRepository, t.Project, strings.TrimSuffix(t.Kind, "s"), t.Name, s.id))
	archive, err := os.Open(s.archive)
	if err != nil {
		return "", err
	}
	defer archive.Close()
	fmt.Fprintf(out, "Building the Dockerfile with the Docker engine as %s\n", ref)
	res, err := engine.ImageBuild(ctx, archive, client.ImageBuildOptions{
		Tags: []string{ref}, Dockerfile: "Dockerfile", Remove: true, ForceRemove: true,
		Labels: map[string]string{"run.usher.build": s.id, "run.usher.target": t.Project + "/" + t.Region + "/" + t.Kind + "/" + t.Name},
	})
	if err != nil {
		return "", fmt.Errorf("docker build: %v", err)
	}
	defer res.Body.Close()
	if err := relayBuildOutput(res.Body, out); err != nil {
		return "", err
	}
	fmt.Fprintf(out, "Built %s\n", ref)
	return ref, nil
}

// buildMessage is one line of the engine's build output.
type buildMessage struct {
	Stream      string `json:"stream"`
	Status      string `json:"status"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Error string `json:"error"`
}

// relayBuildOutput copies the engine's JSON build messages to out as text;
// an error message fails the build.
func relayBuildOutput(body io.Reader, out io.Writer) error {
	dec := json.NewDecoder(body)
	for {
		var m buildMessage
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("docker build: reading the engine's output: %v", err)
		}
		switch {
		case m.ErrorDetail != nil && m.ErrorDetail.Message != "":
			return fmt.Errorf("docker build failed: %s", m.ErrorDetail.Message)
		case m.Error != "":
			return fmt.Errorf("docker build failed: %s", m.Error)
		case m.Stream != "":
			io.WriteString(out, m.Stream)
		case m.Status != "":
			io.WriteString(out, m.Status+"\n")
		}
	}
}
