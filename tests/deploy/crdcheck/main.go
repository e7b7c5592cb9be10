// crdcheck decodes Prometheus Operator resources strictly into the operator's own Go API types: an unknown field
// or a value of the wrong type is an error. encoding/json matches field names without regard to case, so each
// decoded object is encoded again and every key of the input with a non-empty value must be there, spelt the
// same; the sub-routes of an AlertmanagerConfig (raw JSON in the type) are decoded the same way, recursively. tests/deploy/test_chart.py builds it and feeds it the chart's rendered
// manifests, one JSON document per line on stdin; it prints one line per document ("ok KIND NAME" or
// "error KIND NAME: ...") and exits 1 if any document failed or had a kind it does not know.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

func target(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &monitoringv1.PrometheusRule{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1/PodMonitor":
		return &monitoringv1.PodMonitor{}
	case "monitoring.coreos.com/v1alpha1/AlertmanagerConfig":
		return &monitoringv1alpha1.AlertmanagerConfig{}
	case "monitoring.coreos.com/v1/Prometheus":
		return &monitoringv1.Prometheus{}
	case "monitoring.coreos.com/v1/Alertmanager":
		return &monitoringv1.Alertmanager{}
	}
	return nil
}

// strictDecode decodes data into obj refusing unknown fields, then checks no key was matched by case only.
func strictDecode(data []byte, obj any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return err
	}
	again, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	var in, out any
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	if err := json.Unmarshal(again, &out); err != nil {
		return err
	}
	return sameKeys(in, out, "")
}

func empty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case bool:
		return !t
	case float64:
		return t == 0
	case string:
		return t == ""
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	}
	return false
}

// sameKeys: every key of in with a non-empty value is in out, spelt exactly the same.
func sameKeys(in, out any, path string) error {
	switch t := in.(type) {
	case map[string]any:
		o, _ := out.(map[string]any)
		for k, v := range t {
			if empty(v) {
				continue
			}
			ov, ok := o[k]
			if !ok {
				return fmt.Errorf("field %s%s is not a field of the type (a different spelling or case?)", path, k)
			}
			if err := sameKeys(v, ov, path+k+"."); err != nil {
				return err
			}
		}
	case []any:
		o, _ := out.([]any)
		for i, v := range t {
			if i >= len(o) {
				return fmt.Errorf("%s[%d] was dropped", path, i)
			}
			if err := sameKeys(v, o[i], fmt.Sprintf("%s[%d].", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkRoutes(routes []apiextensionsv1.JSON, path string) error {
	for i, raw := range routes {
		var r monitoringv1alpha1.Route
		p := fmt.Sprintf("%s.routes[%d]", path, i)
		if err := strictDecode(raw.Raw, &r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if err := checkRoutes(r.Routes, p); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 64<<20)
	failed := false
	for in.Scan() {
		line := in.Bytes()
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			fmt.Printf("error ? ?: not JSON: %v\n", err)
			failed = true
			continue
		}
		obj := target(head.APIVersion, head.Kind)
		if obj == nil {
			fmt.Printf("error %s/%s %s: not a kind this checker knows\n", head.APIVersion, head.Kind, head.Metadata.Name)
			failed = true
			continue
		}
		err := strictDecode(line, obj)
		if err == nil {
			if amc, ok := obj.(*monitoringv1alpha1.AlertmanagerConfig); ok && amc.Spec.Route != nil {
				err = checkRoutes(amc.Spec.Route.Routes, "spec.route")
			}
		}
		if err != nil {
			fmt.Printf("error %s %s: %v\n", head.Kind, head.Metadata.Name, err)
			failed = true
			continue
		}
		fmt.Printf("ok %s %s\n", head.Kind, head.Metadata.Name)
	}
	if err := in.Err(); err != nil {
		fmt.Printf("error reading stdin: %v\n", err)
		failed = true
	}
	if failed {
		os.Exit(1)
	}
}
