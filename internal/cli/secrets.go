package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/usher-run/usher/internal/apis"
)

// gcloud's secret flags on deploy and services update: --set-secrets,
// --update-secrets, --remove-secrets and --clear-secrets, whose entries are
// ENV=SECRET:VERSION (an env var) or /DIR/FILE=SECRET:VERSION (a file of a
// secret volume mounted at /DIR), in gcloud's order: clear (or set), remove,
// then set or update.

// applySecretFlags changes spec's secret env vars and secret volumes.
func applySecretFlags(spec *apis.RevisionSpec, f *deployFlags, setGiven bool) error {
	ctr := &spec.Containers[0]
	if f.clearSecrets || setGiven {
		ctr.Env = slices.DeleteFunc(ctr.Env, func(e apis.EnvVar) bool { _, _, ok := e.SecretRef(); return ok })
		var names []string
		for _, v := range spec.Volumes {
			if v.Secret != nil {
				names = append(names, v.Name)
			}
		}
		for _, n := range names {
			removeVolume(spec, n)
		}
	}
	for _, k := range f.removeSecrets {
		if !strings.HasPrefix(k, "/") {
			ctr.Env = removeEnv(ctr.Env, k)
			continue
		}
		dir, file := path.Split(k)
		if v := secretVolumeAt(spec, path.Clean(dir)); v != nil {
			v.Secret.Items = slices.DeleteFunc(v.Secret.Items, func(it apis.KeyToPath) bool { return it.Path == file })
			if len(v.Secret.Items) == 0 {
				removeVolume(spec, v.Name)
			}
		}
	}
	entries := make([]string, 0, len(f.setSecrets)+len(f.updateSecrets))
	for k, v := range f.setSecrets {
		entries = append(entries, k+"="+v)
	}
	for k, v := range f.updateSecrets {
		entries = append(entries, k+"="+v)
	}
	slices.Sort(entries) // maps have no order; a volume's files get a stable one
	for _, e := range entries {
		target, ref, _ := strings.Cut(e, "=")
		secret, version, ok := strings.Cut(ref, ":")
		if !ok || secret == "" || version == "" {
			return fmt.Errorf("secret %s=%s: want SECRET:VERSION (VERSION a number or latest)", target, ref)
		}
		if !strings.HasPrefix(target, "/") {
			ctr.Env = setEnvVar(ctr.Env, apis.EnvVar{Name: target, ValueFrom: &apis.EnvVarSource{SecretKeyRef: &apis.SecretKeySelector{Name: secret, Key: version}}})
			continue
		}
		dir, file := path.Split(target)
		dir = path.Clean(dir)
		if file == "" || dir == "/" {
			return fmt.Errorf("secret %s: want /DIR/FILE, a file in a directory to mount", target)
		}
		v := secretVolumeAt(spec, dir)
		if v == nil {
			name := secretVolumeName(dir)
			spec.Volumes = append(spec.Volumes, apis.Volume{Name: name, Secret: &apis.SecretVolumeSource{SecretName: secret}})
			ctr.VolumeMounts = append(ctr.VolumeMounts, apis.VolumeMount{Name: name, MountPath: dir})
			v = &spec.Volumes[len(spec.Volumes)-1]
		} else if v.Secret.SecretName != secret {
			return fmt.Errorf("secret %s: %s already holds files of secret %s; mount each secret in a directory of its own", target, dir, v.Secret.SecretName)
		}
		v.Secret.Items = slices.DeleteFunc(v.Secret.Items, func(it apis.KeyToPath) bool { return it.Path == file })
		v.Secret.Items = append(v.Secret.Items, apis.KeyToPath{Key: version, Path: file})
	}
	return nil
}

// secretVolumeAt is the secret volume mounted at dir, or nil.
func secretVolumeAt(spec *apis.RevisionSpec, dir string) *apis.Volume {
	for _, m := range spec.Containers[0].VolumeMounts {
		if m.MountPath != dir {
			continue
		}
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == m.Name && spec.Volumes[i].Secret != nil {
				return &spec.Volumes[i]
			}
		}
	}
	return nil
}

// secretVolumeName names the secret volume at dir (a DNS label).
func secretVolumeName(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return "secret-" + hex.EncodeToString(sum[:4])
}

// removeVolume removes a volume and its mounts.
func removeVolume(spec *apis.RevisionSpec, name string) {
	spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v apis.Volume) bool { return v.Name == name })
	ctr := &spec.Containers[0]
	ctr.VolumeMounts = slices.DeleteFunc(ctr.VolumeMounts, func(m apis.VolumeMount) bool { return m.Name == name })
}
