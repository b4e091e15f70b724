// The test NodeManager's local file system: Hadoop's own LocalFs, except that setPermission
// is one chmod(2) system call made through java.nio instead of a forked `chmod` process.
//
// Hadoop from Maven Central has no libhadoop.so; without it every local setPermission forks
// `chmod` (4-5 ms here), and a NodeManager sets the permissions of every file it localizes:
// a packed virtualenv of 25,000 files took 100 s to localize. libhadoop does the same call
// natively. Used only by tfspark.testing.hadoop's NodeManager (fs.AbstractFileSystem.file.impl
// in its own core-site.xml); in this package because RawLocalFs's constructors are
// package-private.
package org.apache.hadoop.fs.local;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.ChecksumFs;
import org.apache.hadoop.fs.FsConstants;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;

public class NioChmodLocalFs extends ChecksumFs {
  private static final PosixFilePermission[] BITS = {  // from 0400 down to 0001
      PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE,
      PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.GROUP_READ,
      PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE,
      PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE,
      PosixFilePermission.OTHERS_EXECUTE};

  public NioChmodLocalFs(Configuration conf) throws IOException, URISyntaxException {
    this(FsConstants.LOCAL_FS_URI, conf);
  }

  public NioChmodLocalFs(URI uri, Configuration conf) throws IOException, URISyntaxException {
    super(new RawLocalFs(uri, conf) {
      @Override
      public void setPermission(Path path, FsPermission permission) throws IOException {
        int mode = permission.toShort();
        if ((mode & ~0777) != 0) {  // sticky/setuid bits: leave them to Hadoop's own path
          super.setPermission(path, permission);
          return;
        }
        Set<PosixFilePermission> set = EnumSet.noneOf(PosixFilePermission.class);
        for (int i = 0; i < BITS.length; i++) {
          if ((mode & (0400 >> i)) != 0) {
            set.add(BITS[i]);
          }
        }
        try {
          Files.setPosixFilePermissions(Paths.get(path.toUri().getPath()), set);
        } catch (NoSuchFileException e) {
          throw new FileNotFoundException(path.toString());
        }
      }
    });
  }
}
