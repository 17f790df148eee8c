-- Kubernetes objects the workflow specs load into vmdr-sim: as YAML text, or as tables
-- (to encode as JSON, or to bend into shapes a real API server would refuse).
local json = require "vmdr.json"

local M = {}

M.LABEL = "dr.demojam.com/enabled"

--- A bound PVC and its ceph-csi RBD PV (pool rbd, image `image`), shaped as the API
--- returns them (bind annotation, claimRef with a uid, reclaim policy Delete).
function M.pvc_pv_yaml(ns, claim, pv, image)
    return string.format([[
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: %s
  namespace: %s
  annotations: {pv.kubernetes.io/bind-completed: "yes"}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 8Mi}}
  storageClassName: ocs-storagecluster-ceph-rbd
  volumeMode: Block
  volumeName: %s
status: {phase: Bound}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: %s
  annotations: {pv.kubernetes.io/provisioned-by: openshift-storage.rbd.csi.ceph.com}
spec:
  accessModes: [ReadWriteMany]
  capacity: {storage: 8Mi}
  claimRef: {apiVersion: v1, kind: PersistentVolumeClaim, name: %s, namespace: %s, uid: 0b0e7a8e-1111-2222-3333-444455556666}
  csi:
    driver: openshift-storage.rbd.csi.ceph.com
    volumeHandle: 0001-0011-openshift-storage-0000000000000001-%s
    volumeAttributes: {clusterID: openshift-storage, pool: rbd, imageName: %s}
  persistentVolumeReclaimPolicy: Delete
  storageClassName: ocs-storagecluster-ceph-rbd
  volumeMode: Block
]], claim, ns, pv, pv, claim, ns, "8d74fb16-d233-49ea-8826-" .. string.format("%012d", #image), image)
end


--- A DR-enabled VirtualMachine (a table) with a disk per claim; extra(o), when given, may
--- change the object before it is returned.
function M.vm(ns, name, claims, extra)
    local vols = setmetatable({}, json.array_mt)
    for i, c in ipairs(claims or {}) do
        vols[i] = { name = "d" .. i, persistentVolumeClaim = { claimName = c } }
    end
    local o = { apiVersion = "kubevirt.io/v1", kind = "VirtualMachine",
        metadata = { name = name, namespace = ns, labels = { [M.LABEL] = "true" } },
        spec = { template = { spec = { domain = { devices = {} }, volumes = vols } } } }
    if extra then extra(o) end
    return o
end

--- A 1Gi ReadWriteMany PersistentVolumeClaim (a table) bound to PV `volume`.
function M.pvc(ns, name, volume)
    return { apiVersion = "v1", kind = "PersistentVolumeClaim",
        metadata = { name = name, namespace = ns },
        spec = { accessModes = { "ReadWriteMany" }, resources = { requests = { storage = "1Gi" } },
            volumeName = volume } }
end

--- A 1Gi PersistentVolume (a table) claimed by claim_ns/claim; `source` is merged into its
--- spec (M.csi(image), { hostPath = ... }, { rbd = ... }).
function M.pv(name, claim_ns, claim, source)
    local spec = { accessModes = { "ReadWriteMany" }, capacity = { storage = "1Gi" },
        claimRef = { kind = "PersistentVolumeClaim", namespace = claim_ns, name = claim } }
    for k, v in pairs(source) do spec[k] = v end
    return { apiVersion = "v1", kind = "PersistentVolume", metadata = { name = name }, spec = spec }
end

--- A ceph-csi RBD volume source for M.pv: pool rbd, image `image`.
function M.csi(image)
    return { csi = { driver = "openshift-storage.rbd.csi.ceph.com",
        volumeHandle = "static-" .. image, volumeAttributes = { pool = "rbd", imageName = image } } }
end

--- Appends to list a VM with its own claim <name>-root, bound to PV pv-<name> on image
--- img-<name>.
function M.vm_with_disk(list, ns, name)
    list[#list + 1] = M.vm(ns, name, { name .. "-root" })
    list[#list + 1] = M.pvc(ns, name .. "-root", "pv-" .. name)
    list[#list + 1] = M.pv("pv-" .. name, ns, name .. "-root", M.csi("img-" .. name))
end

--- YAML text: a running DR-enabled VM (label app=<name>, plus `labels`, more flow-map entries
--- starting with ", ") with one root disk on `claim`, followed by the claim and its PV
--- (M.pvc_pv_yaml, PV pv-<name> on image img-<name>).
function M.vm_disk_yaml(ns, name, claim, labels)
    return string.format([[
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: %s
  namespace: %s
  labels: {dr.demojam.com/enabled: "true", app: %s%s}
spec:
  running: true
  template:
    spec:
      domain: {devices: {disks: [{name: root, disk: {bus: virtio}}]}}
      volumes: [{name: root, persistentVolumeClaim: {claimName: %s}}]
---
]], name, ns, name, labels or "", claim) .. M.pvc_pv_yaml(ns, claim, "pv-" .. name, "img-" .. name)
end

return M
