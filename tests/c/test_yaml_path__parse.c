/* vmdr_yaml_path_parse (runtime/yaml/path.c): the path syntax of clean() rules. */
#include <string.h>

#include "check.h"
#include "yaml/yaml.h"

static void expect(const char *path, const char *want)
{
    vmdr_yaml_path p;
    vmdr_err err;
    char got[1200] = "";
    vmdr_err_clear(&err);
    if (vmdr_yaml_path_parse(&p, path, strlen(path), &err) < 0) {
        snprintf(got, sizeof got, "ERR %s", err.message);
    } else {
        for (int i = 0; i < p.n; i++) {
            size_t l = strlen(got);
            const vmdr_yaml_seg *g = &p.seg[i];
            if (g->kind == VMDR_YAML_SEG_KEY)
                snprintf(got + l, sizeof got - l, "<%.*s>", (int)g->n, g->s);
            else if (g->kind == VMDR_YAML_SEG_INDEX)
                snprintf(got + l, sizeof got - l, "#%lld", (long long)g->index);
            else
                snprintf(got + l, sizeof got - l, "*");
        }
    }
    CHECK(strncmp(got, want, strlen(want)) == 0, "%s: got %s, want %s", path, got, want);
}

int main(void)
{
    expect("status", "<status>");
    expect("metadata.managedFields", "<metadata><managedFields>");
    expect("spec.template.spec.volumes[*].dataVolume",
           "<spec><template><spec><volumes>*<dataVolume>");
    expect("a.*.b", "<a>*<b>");
    expect("items[0].name", "<items>#0<name>");
    expect("[3][*]", "#3*");
    expect("metadata.annotations[\"kubectl.kubernetes.io/last-applied-configuration\"]",
           "<metadata><annotations><kubectl.kubernetes.io/last-applied-configuration>");
    expect("a['b.c'].d", "<a><b.c><d>");
    expect("a[\"\"]", "<a><>");
    expect("a/b-c_d", "<a/b-c_d>");
    expect("", "ERR path '' at column 1: empty path");
    expect("a..b", "ERR path 'a..b' at column 3: empty segment");
    expect(".a", "ERR path '.a' at column 1: empty segment");
    expect("a.", "ERR path 'a.' at column 3: empty segment at the end");
    expect("a.[0]", "ERR path 'a.[0]' at column 3: '[' cannot follow '.'");
    expect("a[", "ERR path 'a[' at column 3: expected *, an index or a quoted key");
    expect("a[x]", "ERR path 'a[x]' at column 3: expected *");
    expect("a[1", "ERR path 'a[1' at column 4: expected ']'");
    expect("a[\"b]", "ERR path 'a[\"b]' at column 3: unterminated quoted key");
    expect("a]b", "ERR path 'a]b' at column 2: unexpected ']'");
    expect("a[99999999999999999999]", "ERR path 'a[99999999999999999999]' at column");
    expect("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g",
           "ERR path 'a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g' "
           "at column 65: more than 32 segments");
    return check_result();
}
