using System.Collections;
using System.Reflection;
using System.Runtime.CompilerServices;
using TorchSharp;
using Module = TorchSharp.torch.nn.Module;

namespace PatrickStar.Layers;

/// <summary>
/// Puts a replacement in place of a parent's child module. TorchSharp parents call their children through C# fields
/// (or Sequential's and ModuleList's lists), not through the registry that named_modules reads, so both are rewritten:
/// every field or list entry of the parent that holds the child, and the registry entry under the child's name.
/// </summary>
internal static class ModuleSwap
{
    private static readonly FieldInfo Registry = typeof(Module).GetField("_internal_submodules", BindingFlags.Instance | BindingFlags.NonPublic)
        ?? throw new MissingFieldException("TorchSharp's Module no longer has _internal_submodules; the layer surgery needs updating.");

    /// <summary>Replaces <paramref name="child"/> (registered as <paramref name="name"/>) by <paramref name="replacement"/> in <paramref name="parent"/>.</summary>
    /// <exception cref="NotSupportedException">No place that the parent's forward could call was found, or one cannot hold the replacement.</exception>
    public static void Replace(Module parent, string name, Module child, Module replacement, string path)
    {
        // Checked before anything changes, so a refusal leaves the parent as it was.
        var sites = CallSites(parent, child).ToList();
        if (sites.Count == 0)
            throw Refusal(path, child, replacement, $"{parent.GetType().Name} holds it in no field or list its forward could call");
        foreach (var site in sites)
            if (!site.Type.IsInstanceOfType(replacement))
                throw Refusal(path, child, replacement, $"{site.Description} is declared as {site.Type.Name}; declare it as Module<Tensor, Tensor>");
        foreach (var site in sites) site.Set(replacement);
        if (Registry.GetValue(parent) is IDictionary<string, Module> registered && registered.TryGetValue(name, out var old) && ReferenceEquals(old, child))
            registered[name] = replacement; // in place: the registry keeps its order, so state_dict keys keep theirs
    }

    private static NotSupportedException Refusal(string path, Module child, Module replacement, string why) =>
        new($"module '{path}' ({child.GetType().Name}) cannot be swapped for its chunk-aware twin: {why}, or build it as {replacement.GetType().Name}.");

    private sealed record Site(Type Type, string Description, Action<object> Set);

    private static IEnumerable<Site> CallSites(Module parent, Module child)
    {
        for (var type = parent.GetType(); type is not null && type != typeof(object); type = type.BaseType)
        {
            foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            {
                var value = field.GetValue(parent);
                if (ReferenceEquals(value, child))
                    yield return new Site(field.FieldType, $"field {type.Name}.{field.Name}", v => field.SetValue(parent, v));
                else if (value is IList list)
                {
                    var element = ElementType(list.GetType());
                    for (int i = 0; i < list.Count; i++)
                    {
                        int at = i;
                        if (ReferenceEquals(list[i], child))
                            yield return new Site(element, $"an element of {type.Name}.{field.Name}", v => list[at] = v);
                        else if (list[i] is ITuple { Length: 2 } pair && ReferenceEquals(pair[1], child) && element.IsGenericType)
                        {
                            // ModuleDict keeps (name, module) pairs beside its dictionary.
                            var slot = element.GetGenericArguments()[1];
                            yield return new Site(slot, $"an entry of {type.Name}.{field.Name}", v => list[at] = Activator.CreateInstance(element, pair[0], v));
                        }
                    }
                }
                else if (value is IDictionary dictionary)
                {
                    var slot = dictionary.GetType().IsGenericType ? dictionary.GetType().GetGenericArguments()[^1] : typeof(object);
                    foreach (var key in dictionary.Keys.Cast<object>().ToList())
                        if (ReferenceEquals(dictionary[key], child))
                            yield return new Site(slot, $"an entry of {type.Name}.{field.Name}", v => dictionary[key] = v);
                }
            }
        }
    }

    private static Type ElementType(Type listType) =>
        listType.IsArray ? listType.GetElementType()!
        : listType.GetInterfaces().FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IList<>))?.GetGenericArguments()[0] ?? typeof(object);
}
