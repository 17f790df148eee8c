-- Writes the demo's source-site objects: DR-enabled VMs shaped like the KubeVirt
-- examples in ../shared/fixtures, with their PVCs and ceph-csi RBD PVs whose images
-- scripts/demo creates on Ceph site a. Run by vmdr-run: -- OUTDIR PREFIX
-- Prints one image name per line (the images to create).
local _, args = ...
local fs = require "vmdr.fs"
local yaml = require "vmdr.yaml"
local out, prefix = args[1], args[2] or "demo"
assert(out, "usage: vmdr-run scripts/lib/demo-fixtures.lua -- OUTDIR [PREFIX]")
assert(fs.mkdir(out))

local vms = {
    -- ns, name, tier, disks, dataVolumeTemplate?
    { "shop", "shop-db", "database", { "root", "data" } },
    { "shop", "shop-web", "web", { "root" } },
    { "crm", "crm-db", "database", { "root" } },
    { "crm", "crm-app", "app", { "root" }, true },
}
local images = {}
local n = 0
for _, v in ipairs(vms) do
    local ns, name, tier, disks, dvt = v[1], v[2], v[3], v[4], v[5]
    local volumes, devices, templates = {}, {}, {}
    for _, d in ipairs(disks) do
        n = n + 1
        local claim = name .. "-" .. d
        local image = string.format("%s-csi-vol-%04d", prefix, n)
        local uuid = string.format("8d74fb16-d233-49ea-8826-%012d", n)
        local pvname = "pvc-" .. uuid
        images[#images + 1] = image
        devices[#devices + 1] = { name = d, disk = { bus = "virtio" } }
        if dvt and d == "root" then
            volumes[#volumes + 1] = { name = d, dataVolume = { name = claim } }
            templates[#templates + 1] = {
                metadata = { name = claim },
                spec = { source = { http = { url = "http://images.example/fedora.qcow2" } },
                    storage = { resources = { requests = { storage = "16Mi" } },
                        storageClassName = "ocs-storagecluster-ceph-rbd-virtualization" } },
            }
        else
            volumes[#volumes + 1] = { name = d, persistentVolumeClaim = { claimName = claim } }
        end
        local pvc = {
            apiVersion = "v1", kind = "PersistentVolumeClaim",
            metadata = { name = claim, namespace = ns, uid = uuid,
                annotations = { ["pv.kubernetes.io/bind-completed"] = "yes",
                    ["pv.kubernetes.io/bound-by-controller"] = "yes",
                    ["volume.kubernetes.io/storage-provisioner"] = "openshift-storage.rbd.csi.ceph.com" } },
            spec = { accessModes = { "ReadWriteMany" }, volumeMode = "Block",
                resources = { requests = { storage = "16Mi" } },
                storageClassName = "ocs-storagecluster-ceph-rbd-virtualization", volumeName = pvname },
            status = { phase = "Bound" },
        }
        if dvt and d == "root" then
            pvc.metadata.annotations["cdi.kubevirt.io/storage.createdForDataVolume"] = "0b1e" .. uuid:sub(5)
            pvc.spec.dataSource = { apiGroup = "cdi.kubevirt.io", kind = "VolumeImportSource", name = "import-" .. claim }
        end
        local pv = {
            apiVersion = "v1", kind = "PersistentVolume",
            metadata = { name = pvname, annotations = { ["pv.kubernetes.io/provisioned-by"] = "openshift-storage.rbd.csi.ceph.com" },
                finalizers = { "kubernetes.io/pv-protection" } },
            spec = {
                accessModes = { "ReadWriteMany" }, capacity = { storage = "16Mi" }, volumeMode = "Block",
                claimRef = { apiVersion = "v1", kind = "PersistentVolumeClaim", name = claim, namespace = ns, uid = uuid },
                csi = { driver = "openshift-storage.rbd.csi.ceph.com",
                    volumeHandle = "0001-0011-openshift-storage-0000000000000001-" .. uuid,
                    volumeAttributes = { clusterID = "openshift-storage", pool = "rbd", imageName = image,
                        imageFeatures = "layering,exclusive-lock", ["storage.kubernetes.io/csiProvisionerIdentity"] = "1700000000000-8081-openshift-storage.rbd.csi.ceph.com" } },
                persistentVolumeReclaimPolicy = "Delete",
                storageClassName = "ocs-storagecluster-ceph-rbd-virtualization",
            },
            status = { phase = "Bound" },
        }
        assert(fs.write(out .. "/" .. claim .. ".yaml", yaml.encode_all { pvc, pv }))
    end
    local vm = {
        apiVersion = "kubevirt.io/v1", kind = "VirtualMachine",
        metadata = { name = name, namespace = ns,
            labels = { ["app-tier"] = tier, ["dr.demojam.com/enabled"] = "true", app = name },
            annotations = { ["kubevirt.io/latest-observed-api-version"] = "v1" } },
        spec = {
            runStrategy = "Always",
            template = { metadata = { labels = { ["kubevirt.io/domain"] = name } },
                spec = { domain = { devices = { disks = devices,
                    interfaces = { { name = "default", masquerade = {}, macAddress = string.format("02:00:00:00:00:%02x", n) } } },
                    resources = { requests = { memory = "1Gi" } } },
                    networks = { { name = "default", pod = {} } },
                    volumes = volumes } },
        },
        status = { printableStatus = "Running", ready = true },
    }
    if #templates > 0 then vm.spec.dataVolumeTemplates = templates end
    assert(fs.write(out .. "/vm-" .. name .. ".yaml", yaml.encode(vm)))
end
io.stdout:write(table.concat(images, "\n"), "\n")
