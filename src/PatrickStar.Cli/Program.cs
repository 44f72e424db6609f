using System.Reflection;
var asm = typeof(TorchSharp.torch).Assembly;
foreach (var t in asm.GetTypes())
  foreach (var m in t.GetMethods(BindingFlags.Public|BindingFlags.Static|BindingFlags.Instance|BindingFlags.DeclaredOnly))
  {
    var n = m.Name;
    if (n is "scaled_dot_product_attention" or "gelu" or "AdamW" or "clip_grad_norm_" or "cross_entropy" or "manual_seed" or "embedding" or "layer_norm" or "linear" or "addmm" or "get_rng_state" or "set_num_threads" or "Dropout" or "LayerNorm" or "Embedding" or "empty" or "normal_" or "register_forward_pre_hook" or "multinomial")
      Console.WriteLine($"{t.FullName}.{n}({string.Join(", ", m.GetParameters().Select(p => p.ParameterType.Name + " " + p.Name + (p.HasDefaultValue ? "=" + p.DefaultValue : "")))}) -> {m.ReturnType.Name}");
  }
foreach (var t in asm.GetTypes().Where(t => t.Name.Contains("ParamGroup") || t.Name=="AdamW" || t.Name=="Options" && t.FullName!.Contains("AdamW")))
  foreach (var p in t.GetProperties()) Console.WriteLine($"{t.FullName} prop {p.PropertyType.Name} {p.Name}");
