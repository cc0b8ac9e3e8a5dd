package console

import (
	"fmt"
	"net/http"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
)

// iapToggle turns a service's identity-aware proxy on or off (POST
// …/iap, enable=on|off), as `usher run services update --iap|--no-iap`
// does: the annotation, and the IAP service agent's invoker role. Turning
// it off on a service that allUsers may invoke makes it public to anyone,
// so that needs the same explicit confirmation as granting allUsers.
func (c *Console) iapToggle(w http.ResponseWriter, r *http.Request, s *session) error {
	ls, err := c.loadService(r, s, "")
	if err != nil {
		return err
	}
	ref := ls.Head.serviceRef
	enable := r.PostForm.Get("enable") == "on"
	if !enable && ls.Service.IAPEnabled() && ls.Policy != nil && !ls.Service.InvokerIAMDisabled() &&
		c.cfg.Roles.Compile(iam.PermRoutesInvoke, iam.Level{Policy: ls.Policy}).Public() && r.PostForm.Get("confirm_public") != "yes" ||
		!enable && ls.Service.IAPEnabled() && ls.Service.InvokerIAMDisabled() && r.PostForm.Get("confirm_public") != "yes" {
		return c.pages.render(w, http.StatusOK, "iapoff.html", c.newView(s, ref.Project, ref.Name, iapOffView{Head: ls.Head, Action: ref.URL("iap"), Cancel: ref.URL("")}))
	}
	_, err = ls.b.core.WriteService(ls.b.ctx, ls.b.caller, admin.ServiceWrite{
		Project: ref.Project, Region: ref.Region, Name: ref.Name, Mode: admin.Replace,
		Build: func(old *apis.Service, _ int64) (*apis.Service, error) {
			svc := *old
			svc.Status = apis.ServiceStatus{}
			svc.Metadata.Annotations = map[string]string{}
			for k, v := range old.Metadata.Annotations {
				svc.Metadata.Annotations[k] = v
			}
			if enable {
				svc.Metadata.Annotations[apis.AnnotationIAPEnabled] = "true"
			} else {
				delete(svc.Metadata.Annotations, apis.AnnotationIAPEnabled)
			}
			return &svc, nil
		},
	})
	if err != nil {
		return err
	}
	agent := apis.IAPServiceAgent(ref.Project)
	for attempt := 0; ; attempt++ { // read-modify-write of the agent's grant
		p, err := ls.b.servicePolicy(ref.Project, ref.Region, ref.Name)
		if err != nil {
			return err
		}
		changed := p.AddBinding("roles/run.invoker", agent, nil)
		if !enable {
			changed = p.RemoveBinding("roles/run.invoker", agent, nil, true)
		}
		if !changed {
			break
		}
		if _, err = ls.b.setServicePolicy(ref.Project, ref.Region, ref.Name, p); err == nil || !isAborted(err) || attempt == 5 {
			if err != nil {
				return err
			}
			break
		}
	}
	state := "off"
	if enable {
		state = "on: people sign in with a browser and need IAP-secured Web App User (roles/iap.httpsResourceAccessor)"
	}
	c.cfg.Log.Info("console: IAP toggled", "service", ref.Name, "enabled", enable, "principal", s.principal.Member())
	c.setFlash(s, fmt.Sprintf("Identity-Aware Proxy is %s.", state))
	http.Redirect(w, r, ref.URL(""), http.StatusSeeOther)
	return nil
}

type iapOffView struct {
	Head           serviceHead
	Action, Cancel string
}
