// Marks one symbol-version requirement of an ELF shared library as weak.
//
// Why: TorchSharp's libLibTorchSharp.so (0.107) is linked against a libstdc++ that defines
// GLIBCXX_3.4.32, while Debian 12 and Ubuntu 22.04 stop at GLIBCXX_3.4.30. The only symbol it
// needs at that version (std::ios_base_library_init) is never called, so setting VER_FLG_WEAK
// on that one entry of .gnu.version_r lets the dynamic loader accept the library. patchelf
// cannot make this edit.
//
// This file is compiled twice: into the PatrickStar library (for the start-up diagnosis, with
// PSTAR_LIBRARY defined) and as an MSBuild inline task (build/TorchNative.targets) that patches
// every output folder that carries the library.
using System;
using System.IO;
using System.Text;

namespace PatrickStar.Runtime
{
    public enum ElfPatchOutcome
    {
        /// <summary>The requirement was strong and is now weak.</summary>
        Patched,
        /// <summary>The requirement was already weak: nothing written.</summary>
        AlreadyWeak,
        /// <summary>The library does not require that version at all.</summary>
        NotRequired,
    }

    public static class ElfVersionPatcher
    {
        public const string TorchSharpGlibcxxVersion = "GLIBCXX_3.4.32";
        private const uint ShtGnuVerneed = 0x6ffffffe;
        private const ushort VerFlgWeak = 0x2;

        /// <summary>Is the requirement on <paramref name="version"/> present and strong?</summary>
        public static bool HasStrongRequirement(string path, string version)
        {
            var bytes = File.ReadAllBytes(path);
            int at = FindVernauxFlags(bytes, version, path);
            return at >= 0 && (BitConverter.ToUInt16(bytes, at) & VerFlgWeak) == 0;
        }

        /// <summary>Sets VER_FLG_WEAK on the requirement; idempotent; writes only when it changes.</summary>
        public static ElfPatchOutcome MarkWeak(string path, string version)
        {
            var bytes = File.ReadAllBytes(path);
            int at = FindVernauxFlags(bytes, version, path);
            if (at < 0) return ElfPatchOutcome.NotRequired;
            ushort flags = BitConverter.ToUInt16(bytes, at);
            if ((flags & VerFlgWeak) != 0) return ElfPatchOutcome.AlreadyWeak;
            flags |= VerFlgWeak;
            using (var f = new FileStream(path, FileMode.Open, FileAccess.Write))
            {
                f.Position = at;
                f.WriteByte((byte)(flags & 0xff));
                f.WriteByte((byte)(flags >> 8));
            }
            return ElfPatchOutcome.Patched;
        }

        /// <summary>File offset of vna_flags of the entry naming <paramref name="version"/>, or -1.</summary>
        private static int FindVernauxFlags(byte[] elf, string version, string path)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException($"{path} is not an ELF file.");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException($"{path} is not a 64-bit little-endian ELF file.");

            long shoff = BitConverter.ToInt64(elf, 0x28);
            int shentsize = BitConverter.ToUInt16(elf, 0x3A);
            int shnum = BitConverter.ToUInt16(elf, 0x3C);
            for (int i = 0; i < shnum; i++)
            {
                int sh = checked((int)(shoff + (long)i * shentsize));
                if (BitConverter.ToUInt32(elf, sh + 4) != ShtGnuVerneed) continue;
                int secOffset = checked((int)BitConverter.ToInt64(elf, sh + 0x18));
                int link = (int)BitConverter.ToUInt32(elf, sh + 0x28);
                int count = (int)BitConverter.ToUInt32(elf, sh + 0x2C);
                int strSh = checked((int)(shoff + (long)link * shentsize));
                int strOffset = checked((int)BitConverter.ToInt64(elf, strSh + 0x18));

                int vn = secOffset;
                for (int n = 0; n < count; n++)
                {
                    int auxCount = BitConverter.ToUInt16(elf, vn + 2);
                    int aux = vn + (int)BitConverter.ToUInt32(elf, vn + 8);
                    for (int a = 0; a < auxCount; a++)
                    {
                        int name = strOffset + (int)BitConverter.ToUInt32(elf, aux + 8);
                        if (CStringEquals(elf, name, version)) return aux + 4;
                        uint nextAux = BitConverter.ToUInt32(elf, aux + 12);
                        if (nextAux == 0) break;
                        aux += (int)nextAux;
                    }
                    uint next = BitConverter.ToUInt32(elf, vn + 12);
                    if (next == 0) break;
                    vn += (int)next;
                }
            }
            return -1;
        }

        private static bool CStringEquals(byte[] data, int at, string text)
        {
            var expected = Encoding.ASCII.GetBytes(text);
            if (at + expected.Length >= data.Length) return false;
            for (int i = 0; i < expected.Length; i++)
                if (data[at + i] != expected[i]) return false;
            return data[at + expected.Length] == 0;
        }
    }

#if !PSTAR_LIBRARY
    /// <summary>MSBuild task: patch every given library, logging what was done.</summary>
    public class MarkElfVersionWeak : Microsoft.Build.Utilities.Task
    {
        [Microsoft.Build.Framework.Required]
        public Microsoft.Build.Framework.ITaskItem[] Libraries { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();

        public string Version { get; set; } = ElfVersionPatcher.TorchSharpGlibcxxVersion;

        public override bool Execute()
        {
            foreach (var item in Libraries)
            {
                string path = item.ItemSpec;
                if (!File.Exists(path)) continue;
                try
                {
                    var outcome = ElfVersionPatcher.MarkWeak(path, Version);
                    if (outcome == ElfPatchOutcome.Patched)
                        Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High,
                            $"PatrickStar: marked {Version} weak in {path} (Debian 12 / Ubuntu 22.04 libstdc++ compatibility).");
                }
                catch (Exception e)
                {
                    Log.LogError($"PatrickStar: could not patch {path}: {e.Message}");
                }
            }
            return !Log.HasLoggedErrors;
        }
    }
#endif
}
