package cli

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"
)

func newAuthCmd(g *globals) *cobra.Command {
	auth := &cobra.Command{Use: "auth", Short: "Print tokens for the configured principal"}
	var audience string
	idTok := &cobra.Command{
		Use:   "print-identity-token",
		Short: "Print an identity token (to call private services)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			impersonate := g.impersonate
			if impersonate == "" {
				tok, err := c.IdentityToken(cmd.Context(), audience)
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, tok)
				return nil
			}
			if audience == "" {
				return fmt.Errorf("--audiences is required with --impersonate-service-account: service account tokens must name the service they are for")
			}
			var out struct {
				Token string `json:"token"`
			}
			path := "/v1/projects/-/serviceAccounts/" + url.PathEscape(impersonate) + ":generateIdToken"
			if err := c.DoAsSelf(cmd.Context(), http.MethodPost, path, map[string]any{"audience": audience, "includeEmail": true}, &out); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, out.Token)
			return nil
		},
	}
	idTok.Flags().StringVar(&audience, "audiences", "", "the token's audience, e.g. the service URL")
	idTok.Flags().Bool("include-email", true, "accepted for gcloud compatibility; tokens always carry email")

	accessTok := &cobra.Command{
		Use:   "print-access-token",
		Short: "Print an access token for the admin API (gcloud's auth/access_token_file)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			tok, err := c.AccessToken(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, tok)
			return nil
		},
	}
	auth.AddCommand(idTok, accessTok)
	return auth
}
