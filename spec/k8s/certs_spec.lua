-- vmdr.k8s against vmdr-sim with client certificates (made by the test with openssl):
-- the kubeconfig vmdr-sim writes (client-certificate/key), the same as -data, every verb
-- family and a watch over mutual TLS; no certificate, no access.
local h = require "support.helper"
local kt = require "support.k8stest"
local k8s = require "vmdr.k8s"

describe("vmdr.k8s with client certificates against vmdr-sim", function()
  local dir, certs, s

  setup(function()
    dir = h.tmpdir("k8s-certs")
    certs = kt.certs(dir)
    h.write(dir .. "/fixtures/vm.yaml", [[
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: cert-vm, namespace: certs, labels: {dr.demojam.com/enabled: "true"}}
spec: {runStrategy: Halted, template: {spec: {domain: {devices: {}}}}}
]])
    s = kt.sim { fixtures = dir .. "/fixtures", client_ca = certs }
  end)
  teardown(function() if s then s.stop() end end)

  it("uses the kubeconfig's client certificate for every verb and a watch", function()
    local kc = h.read(s.kubeconfig)
    assert.not_matches("token:", kc)
    local c = assert(k8s.client { kubeconfig = s.kubeconfig })
    local list = assert(c:list("vm", { labelSelector = "dr.demojam.com/enabled=true" }))
    assert.equals(1, #list.items)
    local vm = assert(c:get("vm", "certs", "cert-vm"))
    assert(c:patch("vm", "certs", "cert-vm", { metadata = { labels = { via = "cert" } } }))
    local it, _, _, w = c:watch("vm", { namespace = "certs" })
    assert.equals("RESYNC", (it()))
    vm.metadata = { name = "cert-vm-2", namespace = "certs" }
    vm.status = nil
    assert(c:create("vm", vm))
    local t, o = it()
    w:close()
    assert.equals("ADDED", t)
    assert.equals("cert-vm-2", o.metadata.name)
    assert(c:delete("vm", "certs", "cert-vm-2"))
    c:close()
  end)

  it("accepts the certificate and key as -data", function()
    local c = assert(k8s.client { server = s.url, ca_data = s.ca_pem, cert_data = certs.client_pem,
      key_data = certs.client_key_pem })
    assert.equals("cert", assert(c:get("vm", "certs", "cert-vm")).metadata.labels.via)
    c:close()
  end)

  it("gets nothing without a client certificate", function()
    local c = assert(k8s.client { server = s.url, ca_data = s.ca_pem, retries = 0 })
    local r, err = c:get({ group = "kubevirt.io", version = "v1", resource = "virtualmachines",
      namespaced = true }, "certs", "cert-vm")
    c:close()
    assert.is_nil(r)
    assert.equals("unauthorized", err.code) -- vmdr-sim, like an API server, answers 401
  end)

  it("gets nothing with a certificate from another CA", function()
    local c = assert(k8s.client { server = s.url, ca_data = s.ca_pem, cert_file = certs.other_crt,
      key_file = certs.other_key, retries = 0 })
    local r, err = c:get({ group = "kubevirt.io", version = "v1", resource = "virtualmachines",
      namespaced = true }, "certs", "cert-vm")
    c:close()
    assert.is_nil(r)
    assert.equals("unauthorized", err.code)
  end)
end)
