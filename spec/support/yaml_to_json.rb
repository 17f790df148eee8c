# Reads YAML files with Ruby's Psych (safe_load: no dates, symbols or aliases to
# objects) and prints one JSON array of their values; NaN and infinities become
# "<nan>", "<inf>", "<-inf>". A second independent reader for the codec specs.
require "json"
require "yaml"

def fix(v)
  case v
  when Float
    return "<nan>" if v.nan?
    return (v > 0 ? "<inf>" : "<-inf>") if v.infinite?
    v
  when Hash
    v.each_with_object({}) do |(k, x), h|
      raise "non-string key #{k.inspect}" unless k.is_a?(String)
      h[k] = fix(x)
    end
  when Array then v.map { |x| fix(x) }
  when String, Integer, TrueClass, FalseClass, NilClass then v
  else raise "unexpected #{v.class}: #{v.inspect}"
  end
end

out = ARGV.map { |f| fix(YAML.safe_load(File.read(f, encoding: "UTF-8"), aliases: false)) }
print JSON.generate(out)
